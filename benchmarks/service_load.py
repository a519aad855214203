"""Load on ``lrface serve``, loopback only: N concurrent clients posting the same probe photo to
``/api/search`` against a gallery of synthetic identities, bounded by a request count and a
time limit. Prints requests/s, p50/p90/p99 latency and the error count per client count.

The gallery is ``--identities`` random unit vectors (one enrolment each, in the teacher's
dimension and under its encoder key, so the server accepts it), written through
``SqliteStore.add`` one transaction per identity (the time is printed: the store's commit
rate). The server is a real ``lrface serve`` subprocess (MTCNN + the dlib teacher, an API key,
``OMP_NUM_THREADS=--threads``, its encoders under each of ``--runtimes`` in turn: one server
each, same gallery and probe); every request detects, aligns and embeds the probe, then
searches the faiss index. The probe is an LFW photo shrunk to ``--probe-size`` px.

    python benchmarks/service_load.py --identities 10000 --clients 1,4,16 --requests 200 \
        --runtimes torch,onnx
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
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from lrface.machine import cpu_model
from lrface.paths import DatasetNotFoundError, resolve_lfw
from lrface.search.store import Enrolment, SqliteStore

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gallery: Path, port: int, threads: int, runtime: str) -> subprocess.Popen:
    env = {**os.environ, "LRFACE_API_KEY": KEY, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "lrface.cli", "serve", "--gallery", str(gallery)]
    cmd += ["--runtime", runtime]
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


async def load(url: str, probe: bytes, clients: int, requests: int, seconds: float) -> dict:
    """``clients`` loops posting the probe until ``requests`` were sent or ``seconds`` passed."""
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    stop = time.monotonic() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.monotonic() < stop:
            sent += 1
            start = time.perf_counter()
            try:
                r = await http.post(
                    "/api/search", files={"file": ("probe.png", probe)}, data={"k": "5"}
                )
                ok = r.status_code == 200 and r.json()["faces"][0]["matches"]
                if not ok:
                    errors.append(f"{r.status_code} {r.text[:80]}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": KEY}, timeout=120, limits=limits
    ) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    ms = sorted(1000 * x for x in latencies)
    pct = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {
        "clients": clients,
        "requests": len(ms),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(ms) / wall, 2),
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(pct(0.90), 1),
        "p99_ms": round(pct(0.99), 1),
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
    parser.add_argument("--threads", type=int, default=1, help="server's OMP threads")
    parser.add_argument(
        "--runtimes", default="onnx", help="server encoder runtimes, one server each: onnx, torch"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    try:
        lfw = resolve_lfw()
    except DatasetNotFoundError as exc:
        raise SystemExit(f"{exc}: the probe is an LFW photo") from None
    probe = probe_png(lfw, args.probe_size)
    with tempfile.TemporaryDirectory(prefix="lrface-load-") as tmp:
        gallery = Path(tmp) / "load.db"
        built = build_gallery(gallery, args.identities, args.seed)
        print(
            f"gallery: {args.identities} identities written in {built:.1f} s "
            f"({args.identities / built:.0f} commits/s)",
            flush=True,
        )
        rows = []
        for runtime in args.runtimes.split(","):
            port = free_port()
            server = start_server(gallery, port, args.threads, runtime)
            try:
                url = f"http://127.0.0.1:{port}"
                asyncio.run(load(url, probe, 1, 3, 60))  # warm-up, not counted
                for n in (int(c) for c in args.clients.split(",")):
                    row = asyncio.run(load(url, probe, n, args.requests, args.seconds))
                    rows.append({"runtime": runtime} | row)
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)
    print(
        f"\n{cpu_model()}, {os.cpu_count()} logical CPUs, server OMP threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.2f}; probe {args.probe_size} px, "
        f"{args.identities} identities\n"
    )
    print("| runtime | clients | requests | errors | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['runtime']} | {r['clients']} | {r['requests']} | {r['errors']} | "
            f"{r['requests_per_s']} | "
            f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
