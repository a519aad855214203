"""Many cameras, many servers, one watch-list, as deployed (docs/service.md, "Deployment"): two
``lrface serve`` processes and two ``lrface watch --camera`` workers on one PostgreSQL database
over loopback, a third process enrolling people. Every enrolment is seen by both servers; an
identity enrolled through one server is found by the other within a second; ``kill -9`` of a
server in the middle of enrolments loses nothing it answered for and leaves nothing half
written; ``kill -9`` of a worker and its restart leave every finished track in the event log
exactly once. The processes run the test pipeline (tests/deploy_worker.py), not the models."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from lrface.search.store import EventQuery, create_store, open_store
from tests.test_pipeline import COLOURS, ColourEncoder, scene

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.slow


def _spawn(*args: str, **kw) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.deploy_worker", *args], cwd=ROOT, env=env, **kw
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(url: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    args = ["serve", "--gallery", url, "--no-auth", "--port", str(port), "--student", "none"]
    return _spawn(*args, stdout=subprocess.DEVNULL), f"http://127.0.0.1:{port}"


def _until(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _png(colour: str, side: int = 60) -> bytes:
    ok, data = cv2.imencode(".png", scene((colour, 40, 40, side))[:, :, ::-1])
    return data.tobytes()


def _frames(folder: Path) -> Path:
    """A camera's footage: red, blue, green squares crossing one after another on black, with
    a blank gap between them (each one track): three tracks, 150 frames."""
    folder.mkdir()
    index = 0
    for colour in COLOURS:
        for step in range(35):
            image = scene((colour, 10 + 3 * step, 50, 40), size=200)
            cv2.imwrite(str(folder / f"{index:05d}.png"), image[:, :, ::-1])
            index += 1
        for _ in range(15):
            cv2.imwrite(str(folder / f"{index:05d}.png"), np.zeros((200, 200, 3), np.uint8))
            index += 1
    return folder


def _watch(url: str, frames: Path, camera: str, out: Path) -> subprocess.Popen:
    args = ["watch", str(frames), "--gallery", url, "--camera", camera, "--out", str(out)]
    args += ["--threshold", "0.99", "--student", "none", "--full-every", "1"]
    return _spawn(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_two_servers_two_workers_one_database(postgres_url, tmp_path):
    teacher = ColourEncoder("teacher")
    create_store(postgres_url, teacher.cache_key, teacher.dim, "teacher").close()
    (server_a, a), (server_b, b) = _serve(postgres_url), _serve(postgres_url)
    frames = _frames(tmp_path / "frames")
    # "gate" watches while the servers start and enrol; "hall" starts later, right before it is
    # to be killed mid-run (started with the others, under load it could finish first)
    workers = {"gate": _watch(postgres_url, frames, "gate", tmp_path / "gate")}
    processes = [server_a, server_b, workers["gate"]]
    try:
        for base in (a, b):
            _until(lambda base=base: _answers(base), 90, f"server {base}")

        # a third process enrolls; both servers' indexes hold every enrolment
        enroller = _spawn("enroll-loop", postgres_url, "walker", "40", stdout=subprocess.PIPE)
        assert enroller.wait(timeout=60) == 0
        for base in (a, b):
            _until(
                lambda base=base: httpx.get(f"{base}/api/health").json()["identities"] == 40,
                1.0,
                f"all 40 enrolments in {base}'s index",
            )

        # enrolled through A, found through B within a second
        posted = httpx.post(
            f"{a}/api/identities/red/photos", files=[("files", ("red.png", _png("red")))]
        )
        assert posted.status_code == 200 and posted.json()["added"] == 1
        start = time.monotonic()

        def found_in_b() -> bool:
            answer = httpx.post(f"{b}/api/search", files={"file": ("p.png", _png("red", 50))})
            return answer.json()["faces"][0]["decision"]["top"][0]["name"] == "red"

        _until(found_in_b, 1.0, "red found through B")
        assert time.monotonic() - start < 1.0

        # kill -9 of server A in the middle of enrolments: what it answered for is committed
        committed: list[str] = []

        def burst() -> None:
            for i in range(200):
                try:
                    r = httpx.post(
                        f"{a}/api/identities/burst{i:03d}/photos",
                        files=[("files", ("b.png", _png("blue", 30 + i % 40)))],
                        timeout=10,
                    )
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    committed.append(f"burst{i:03d}")

        poster = threading.Thread(target=burst)
        poster.start()
        _until(lambda: len(committed) >= 5, 60, "enrolments through A")
        server_a.kill()
        poster.join(timeout=30)

        # kill -9 of worker "hall" once it logged a track, then its restart on the same input
        workers["hall"] = _watch(postgres_url, frames, "hall", tmp_path / "hall")
        processes.append(workers["hall"])
        with open_store(postgres_url) as store:
            _until(
                lambda: (
                    store.events(EventQuery(camera="hall")) or workers["hall"].poll() is not None
                ),
                120,
                "a track logged by hall",
            )
        assert workers["hall"].poll() is None, "hall finished before it could be killed"
        workers["hall"].kill()
        workers["hall"].wait()
        workers["hall"] = _watch(postgres_url, frames, "hall", tmp_path / "hall")
        processes.append(workers["hall"])
        for cam, worker in workers.items():
            assert worker.wait(timeout=180) == 0, f"{cam}: {worker.stderr.read()}"

        with open_store(postgres_url) as store:
            people = {p.name: p.photos for p in store.identities()}
            assert set(committed) <= set(people)  # nothing A answered for is lost
            assert all(n == 1 for n in people.values())  # nothing half written
            assert store.changes_since(0)[0] == store.generation()  # the change log is whole
            assert len(people) == 40 + 1 + len([p for p in people if p.startswith("burst")])
            for cam in workers:
                files = [
                    json.loads(line)
                    for line in (tmp_path / cam / "events.jsonl").read_text().splitlines()
                ]
                logged = store.events(EventQuery(camera=cam, limit=1000))
                assert len(files) == 3 and len(logged) == 3, cam
                assert sorted(e.track_id for e in logged) == [f["track_id"] for f in files]
                assert {e.identity for e in logged} <= {None, *people}  # live enrolments count
                assert all(e.thumbnail is None and e.has_thumbnail for e in logged)
        assert httpx.get(f"{b}/api/health").json()["identities"] == len(people)
        listed = httpx.get(f"{b}/api/events", params={"camera": "gate"}).json()["events"]
        assert len(listed) == 3
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
