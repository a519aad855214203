"""Load on ``lrface serve``, loopback only: N concurrent clients posting the same probe photo to
``/api/search`` against a gallery of synthetic identities, bounded by a request count and a
time limit. Prints requests/s, p50/p90/p99 latency and the error count per client count.

Each gallery backend of ``--backends`` (an SQLite file; a PostgreSQL database, in a throw-away
cluster this script starts, as the tests do: tests/pg_cluster.py) is served by each number of
``--servers`` at once (the clients take turns among them), while a writer enrolls
``--enrol-rate`` new identities a second into the same gallery (0: none), so the servers keep
their indexes in step under load; the rows say how many enrolments went in and whether every
server's index held all of them at the end.

The gallery is ``--identities`` random unit vectors (one enrolment each, in the teacher's
dimension and under its encoder key, so the server accepts it), written through
``SqliteStore.add`` one transaction per identity (the time is printed: the store's commit
rate). The server is a real ``lrface serve`` subprocess (MTCNN + the dlib teacher, an API key,
``--threads`` intra-op threads or its own default, its encoders under each of ``--runtimes``
in turn: one server each, same gallery and probe); every request detects, aligns and embeds
the probe, then searches the faiss index. The probe is an LFW photo shrunk to ``--probe-size`` px.

With ``--large N`` each client count is measured twice: alone, then while N more clients
post, one after the other, a large photo (the same face pasted on a black
``--large-side``-px square PNG: a small file just under the server's 25-megapixel limit,
the attack of issue 26, item 2), whose latencies are reported in their own columns.

    python benchmarks/service_load.py --identities 10000 --clients 1,8,16 --requests 200 \
        --large 2
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from lrface.machine import cpu_model
from lrface.paths import DatasetNotFoundError, resolve_lfw
from lrface.search.store import Enrolment, SqliteStore, migrate, open_store

KEY = "service-load-benchmark-key"


def build_gallery(path: Path, identities: int, seed: int) -> float:
    """A gallery of ``identities`` random unit vectors under the teacher's key; seconds taken."""
    from lrface.models.factory import create_encoder

    teacher = create_encoder("dlib-resnet-torch")
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(identities, teacher.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = time.perf_counter()
    with SqliteStore.create(path, teacher.cache_key, teacher.dim, "dlib-resnet-torch") as store:
        for i, v in enumerate(vectors):
            store.add(f"synthetic_{i:06d}", [Enrolment(v, f"synthetic/{i}", None)])
    return time.perf_counter() - start


def probe_png(lfw: Path, size: int) -> bytes:
    image = Image.open(lfw / "George_W_Bush" / "George_W_Bush_0003.jpg")
    buf = io.BytesIO()
    image.resize((size, size), Image.Resampling.BOX).save(buf, "PNG")
    return buf.getvalue()


def large_png(lfw: Path, side: int) -> bytes:
    """The probe's face on a black ``side`` x ``side`` square: few bytes, many pixels."""
    canvas = Image.new("RGB", (side, side))
    canvas.paste(
        Image.open(lfw / "George_W_Bush" / "George_W_Bush_0003.jpg"), (side // 2, side // 2)
    )
    buf = io.BytesIO()
    canvas.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gallery: str, port: int, threads: int | None, runtime: str) -> subprocess.Popen:
    env = {**os.environ, "LRFACE_API_KEY": KEY}
    cmd = [sys.executable, "-m", "lrface.cli", "serve", "--gallery", str(gallery)]
    cmd += ["--runtime", runtime] + (["--threads", str(threads)] if threads else [])
    proc = subprocess.Popen(cmd + ["--port", str(port)], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not answer within 120 s")


def enrol_while(target: str, rate: float, stop: threading.Event, seed: int) -> list[int]:
    """Enroll a random identity into ``target`` ``rate`` times a second until ``stop``; the
    count (in a list, filled as it goes)."""
    done = [0]
    if rate <= 0:
        return done

    def run() -> None:
        rng = np.random.default_rng(seed)
        with open_store(target) as store:
            while not stop.wait(1 / rate):
                v = rng.normal(size=store.dim).astype(np.float32)
                store.add(f"live_{seed}_{done[0]:06d}", [Enrolment(v / np.linalg.norm(v), "x")])
                done[0] += 1

    threading.Thread(target=run, daemon=True).start()
    return done


def percentiles(latencies: list[float]) -> dict:
    ms = sorted(1000 * x for x in latencies)
    if not ms:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None}
    pct = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(pct(0.90), 1),
        "p99_ms": round(pct(0.99), 1),
    }


async def load(
    urls: list[str],
    probe: bytes,
    clients: int,
    requests: int,
    seconds: float,
    large: bytes | None = None,
    large_clients: int = 0,
) -> dict:
    """``clients`` loops (client i on ``urls[i % len(urls)]``) posting the probe until
    ``requests`` were sent or ``seconds`` passed, while ``large_clients`` loops (on the first
    server) post ``large`` until the small ones are done."""
    latencies: list[float] = []
    large_latencies: list[float] = []
    large_status: list[int] = []
    errors: list[str] = []
    sent = 0
    stop = time.monotonic() + seconds
    done = asyncio.Event()

    async def large_client(http: httpx.AsyncClient) -> None:
        while not done.is_set():
            start = time.perf_counter()
            try:
                r = await http.post("/api/search", files={"file": ("large.png", large)})
                large_status.append(r.status_code)
            except httpx.HTTPError:
                large_status.append(0)
            large_latencies.append(time.perf_counter() - start)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.monotonic() < stop:
            sent += 1
            start = time.perf_counter()
            try:
                r = await http.post(
                    "/api/search", files={"file": ("probe.png", probe)}, data={"k": "5"}
                )
                ok = r.status_code == 200 and r.json()["faces"][0]["decision"]["top"]
                if not ok:
                    errors.append(f"{r.status_code} {r.text[:80]}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients + large_clients)
    https = [
        httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=120, limits=limits)
        for url in urls
    ]
    background = [asyncio.create_task(large_client(https[0])) for _ in range(large_clients)]
    if background:
        await asyncio.sleep(1.0)  # the large ones are being decoded and detected
    start = time.perf_counter()
    await asyncio.gather(*(client(https[i % len(https)]) for i in range(clients)))
    wall = time.perf_counter() - start
    done.set()
    await asyncio.gather(*background)
    for http in https:
        await http.aclose()
    large_row = {}
    if large_clients:
        large = percentiles(large_latencies)
        large_row = {
            "large_requests": len(large_latencies),
            "large_statuses": sorted(set(large_status)),
            "large_p50_ms": large["p50_ms"],
            "large_p99_ms": large["p99_ms"],
        }
    return {
        "clients": clients,
        "large_clients": large_clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        **percentiles(latencies),
        **large_row,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=200, help="requests per client count")
    parser.add_argument("--seconds", type=float, default=120, help="time limit per client count")
    parser.add_argument("--probe-size", type=int, default=100, help="probe photo side, px")
    parser.add_argument(
        "--threads", type=int, default=None, help="server's --threads (default: its own)"
    )
    parser.add_argument(
        "--large", type=int, default=0, help="also measure with this many large-photo clients"
    )
    parser.add_argument("--large-side", type=int, default=4900, help="large photo side, px")
    parser.add_argument(
        "--runtimes", default="onnx", help="server encoder runtimes, one run each: onnx, torch"
    )
    parser.add_argument("--backends", default="sqlite", help="galleries: sqlite, postgres")
    parser.add_argument("--servers", default="1", help="servers sharing the gallery, e.g. 1,2")
    parser.add_argument("--enrol-rate", type=float, default=0, help="enrolments/s during load")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    try:
        lfw = resolve_lfw()
    except DatasetNotFoundError as exc:
        raise SystemExit(f"{exc}: the probe is an LFW photo") from None
    probe = probe_png(lfw, args.probe_size)
    large = large_png(lfw, args.large_side) if args.large else None
    cluster = None
    with tempfile.TemporaryDirectory(prefix="lrface-load-") as tmp:
        source = Path(tmp) / "source.db"
        built = build_gallery(source, args.identities, args.seed)
        print(
            f"gallery: {args.identities} identities written in {built:.1f} s "
            f"({args.identities / built:.0f} commits/s)",
            flush=True,
        )
        rows = []
        try:
            for backend in args.backends.split(","):
                for runtime in args.runtimes.split(","):
                    for servers in (int(n) for n in args.servers.split(",")):
                        if backend == "postgres" and cluster is None:
                            cluster = postgres_cluster()
                        target = (
                            cluster.database() if backend == "postgres" else f"{tmp}/{len(rows)}.db"
                        )
                        migrate(source, target)  # a fresh copy of the same gallery per run
                        rows += run_servers(args, (probe, large), target, backend, runtime, servers)
        finally:
            if cluster is not None:
                cluster.stop()
    threads = args.threads or "serve's default"
    print(
        f"\n{cpu_model()}, {os.cpu_count()} logical CPUs, server threads {threads}, "
        f"load average {os.getloadavg()[0]:.2f}; probe {args.probe_size} px, "
        f"{args.identities} identities, enrolments during the load: {args.enrol_rate}/s"
        + (f"; large photo {args.large_side} px, {len(large)} bytes" if large else "")
        + "\n"
    )
    print(
        "| gallery | servers | runtime | clients | large-photo clients | requests | errors "
        "| req/s | p50 ms | p90 ms | p99 ms | large: requests, statuses, p50 ms "
        "| enrolled during | indexes in step |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for r in rows:
        big = (
            f"{r['large_requests']}, {r['large_statuses']}, {r['large_p50_ms']}"
            if r["large_clients"]
            else ""
        )
        print(
            f"| {r['backend']} | {r['servers']} | {r['runtime']} | {r['clients']} | "
            f"{r['large_clients']} | {r['requests']} | {r['errors']} | {r['requests_per_s']} | "
            f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {big} | {r['enrolled']} | "
            f"{r['in_step']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


def postgres_cluster():
    """A throw-away PostgreSQL cluster, started as the tests start theirs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pg_cluster import Cluster, find_bin

    bindir = find_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries (initdb, pg_ctl) not found: --backends sqlite")
    return Cluster(bindir)


def run_servers(
    args, probes: tuple[bytes, bytes | None], target: str, backend: str, runtime: str, servers: int
):
    """``servers`` servers on ``target``, loaded at each client count (alone, and beside
    ``--large`` large-photo clients) while a writer enrolls; a row per measurement."""
    probe, large = probes
    procs, urls = [], []
    rows = []
    try:
        for _ in range(servers):
            port = free_port()
            procs.append(start_server(target, port, args.threads, runtime))
            urls.append(f"http://127.0.0.1:{port}")
        asyncio.run(load(urls, probe, len(urls), 3 * len(urls), 60))  # warm-up, not counted
        extras = sorted({0, args.large})
        measurements = [(int(c), e) for c in args.clients.split(",") for e in extras]
        for n, extra in measurements:
            stop = threading.Event()
            enrolled = enrol_while(target, args.enrol_rate, stop, args.seed + len(rows) + 1)
            row = asyncio.run(load(urls, probe, n, args.requests, args.seconds, large, extra))
            stop.set()
            time.sleep(0.5)  # an enrolment in flight commits
            with open_store(target) as store:
                size = len(store)
            health = [httpx.get(f"{u}/api/health", headers={"X-API-Key": KEY}) for u in urls]
            seen = [answer.json()["identities"] for answer in health]
            rows.append(
                {"backend": backend, "servers": servers, "runtime": runtime}
                | row
                | {"enrolled": enrolled[0], "in_step": all(s == size for s in seen)}
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    return rows


if __name__ == "__main__":
    main()
