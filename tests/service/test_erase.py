"""Issue 26, item 3: erased is erased. After a removal, through the API and a normal stop
(SIGTERM) of ``lrface serve``, or through ``lrface gallery remove`` while a server holds the
database open, the removed name, its photos' file names and its thumbnails are in none of the
database's files (db, -wal, -shm); nor are its score-normalization statistics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
from typer.testing import CliRunner

from lrface.cli import app as cli_app
from lrface.search.store import Enrolment, SqliteStore, open_store
from tests.service.test_app import BLUE, RED

SECRET = "Zelda Quartermaine"
ROOT = Path(__file__).resolve().parents[2]


def _db_bytes(path: Path) -> bytes:
    return b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


def test_gallery_remove_erases_while_a_server_holds_the_database(tmp_path):
    path = tmp_path / "g.db"
    with SqliteStore.create(path, "enc", 4) as store:
        thumb = b"\xff\xd8" + b"ZELDA-THUMBNAIL" * 30
        store.add(SECRET, [Enrolment(np.array([1.0, 0, 0, 0]), f"/in/{SECRET}.jpg", "h", thumb)])
        store.add("Keeper", [Enrolment(np.array([0, 1.0, 0, 0]), "keeper.jpg", "k")])
        stats = np.frombuffer(b"ZSTATROW" * 4, "<f4").reshape(2, 4)  # findable in the file
        store.put_identity_stats({SECRET: {"enc-lr": stats}, "Keeper": {"enc-lr": np.ones((2, 4))}})
    server = open_store(path)  # a running `lrface serve` keeps its connection open
    try:
        assert server.generation() == 2
        result = CliRunner().invoke(
            cli_app, ["gallery", "remove", "zelda quartermaine", "--gallery", str(path)]
        )
        assert result.exit_code == 0, result.output
        assert f"removed {SECRET!r}" in result.output
        data = _db_bytes(path)
        assert SECRET.encode() not in data and b"ZELDA-THUMBNAIL" not in data
        assert SECRET.lower().encode() not in data  # its name key either
        assert b"ZSTATROW" not in data and set(server.identity_stats()) == {"Keeper"}
        entry = server.audit_log()[0]
        assert entry.action == "remove" and entry.actor.startswith("cli:")
        assert entry.target.startswith("[erased identity #")
    finally:
        server.close()


SERVE = textwrap.dedent(
    """
    import sys
    from lrface.cli import common
    from tests.test_pipeline import ColourEncoder, SquareDetector
    common.make_detector = lambda *a, **k: SquareDetector()
    common.load_encoder = lambda name, *a, **k: ColourEncoder(name)
    from lrface.cli import app
    app(sys.argv[1:])
    """
)


def test_removed_through_the_api_and_stopped_by_sigterm_leaves_no_trace(tmp_path):
    path = tmp_path / "g.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "LRFACE_API_KEY": ""}
    args = ["serve", "--gallery", str(path), "--no-auth", "--port", str(port)]
    args += ["--encoder", "teacher", "--student", "none", "--runtime", "torch"]
    proc = subprocess.Popen([sys.executable, "-c", SERVE, *args], env=env, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/api/health")
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        files = {"files": (f"{SECRET}.png", RED, "image/png")}
        assert httpx.post(f"{url}/api/identities/{SECRET}/photos", files=files).status_code == 200
        files = {"files": ("keeper.png", BLUE, "image/png")}
        assert httpx.post(f"{url}/api/identities/Keeper/photos", files=files).status_code == 200
        found = httpx.post(url + "/api/search", files={"file": ("p.png", RED)}).json()
        assert found["faces"][0]["decision"]["top"][0]["name"] == SECRET  # audited with the name
        assert SECRET.encode() in _db_bytes(path)
        assert httpx.delete(f"{url}/api/identities/{SECRET}").status_code == 200
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    data = _db_bytes(path)
    assert SECRET.encode() not in data and b"Zelda" not in data
    assert SECRET.lower().encode() not in data  # its name key either
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # closed cleanly: nothing left in a WAL
    with open_store(path) as store:
        assert [i.name for i in store.identities()] == ["Keeper"]
        assert [e.action for e in store.audit_log()] == ["remove", "search", "enroll", "enroll"]
