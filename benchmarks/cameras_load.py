"""Several cameras on one machine: N ``lrface watch --camera`` worker processes at once (what
``lrface cameras`` starts, one per camera), each on its own copy of the real arcade clip,
against one watch-list; frames/s per camera, against one camera alone in the same run.

    OMP_NUM_THREADS=1 python benchmarks/cameras_load.py --cameras 1,2 --height 720 \
        --out out/cameras-load.json

Footage and watch-list are those of ``video_real.py`` (the clip scaled to ``--height``, written
once; ``--people`` LFW people enrolled by MTCNN and the teacher), the watch-list copied into an
SQLite gallery that every worker opens, as ``lrface cameras`` runs them: ``lrface watch``'s
defaults (four threads per worker, encoders under ONNX Runtime, one intra-op thread), each
worker logging its tracks in the gallery's event log under its own camera name. Two frame
rates per worker, start-up (models, watch-list, thresholds) apart: *run*, its frames over the
time from the moment it says it is ready (the ``gallery:`` line) to its exit, so the first
frames' warm-up and the last tracks' writing and the interpreter's exit are in it (on a
105-frame clip they weigh); and *steady*, the rate its progress bar shows at the end (tqdm's
moving average over the last updates: the pace once warm). *All cameras* sums them: the
frames the machine watched per second.
The 1-minute load average before and after each row is recorded: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from video_real import build_gallery, scaled_copy, shared_video

from lrface.data.lfw import LFW
from lrface.machine import save_measurement
from lrface.search.store import migrate

READY = "gallery: "
"""The stderr line ``lrface watch`` prints when it starts on the frames."""
RATE = re.compile(r"(\d+(?:\.\d+)?)(frame/s|s/frame)")


class Worker:
    """One ``lrface watch`` process, its stderr read as it comes to time its start."""

    def __init__(self, args: list[str], env: dict):
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.ready: float | None = None
        self.ended = 0.0
        self.stderr = ""
        self._reader = threading.Thread(target=self._read)
        self._reader.start()

    def _read(self) -> None:
        while chunk := self.process.stderr.read(256):
            self.stderr += chunk
            if self.ready is None and READY in self.stderr:
                self.ready = time.perf_counter()
        self.ended = time.perf_counter()  # stderr closed: the process is exiting

    def result(self) -> dict:
        """Frames/s from ready to exit, and the tracks written; RuntimeError if it failed."""
        stdout = self.process.stdout.read()
        self.process.wait(timeout=1800)
        self._reader.join()
        summary = re.search(r"(\d+) frames processed.*?(\d+) tracks written", stdout, re.S)
        if self.process.returncode or self.ready is None or summary is None:
            raise RuntimeError(f"a worker failed ({self.process.returncode}): {self.stderr[-500:]}")
        frames, tracks = int(summary.group(1)), int(summary.group(2))
        value, unit = RATE.findall(self.stderr)[-1]  # the bar's last rate
        steady = float(value) if unit == "frame/s" else 1 / float(value)
        run = frames / (self.ended - self.ready)
        return {"frames": frames, "run_frames_per_s": round(run, 2),
                "steady_frames_per_s": round(steady, 2), "tracks": tracks}  # fmt: skip


def run_cameras(count: int, source: Path, gallery: Path, out: Path) -> dict:
    """``count`` workers at once on ``source``; each one's frames/s and tracks, the wall time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    workers = []
    for i in range(count):
        args = [sys.executable, "-m", "lrface.cli", "watch", str(source), "--gallery", str(gallery)]
        args += ["--camera", f"cam{i}", "--out", str(out / f"{count}-cam{i}")]
        workers.append(Worker(args, env))
    rows = [worker.result() for worker in workers]
    return {
        "cameras": count,
        "workers": rows,
        "all_cameras_run_frames_per_s": round(sum(r["run_frames_per_s"] for r in rows), 1),
        "all_cameras_steady_frames_per_s": round(sum(r["steady_frames_per_s"] for r in rows), 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", default="1,2", help="worker counts, one row each")
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--people", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--work", type=Path, default=Path("out/video-real"), help="clip and list")
    ap.add_argument("--out", type=Path, default=Path("out/cameras-load.json"))
    args = ap.parse_args()
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    listed = args.work / f"gallery-{args.people}.safetensors"
    build_gallery(LFW(args.lfw), args.people, args.seed, listed)
    source = scaled_copy(shared_video(), args.height, args.work)
    report: dict = {"video": str(source), "height": args.height, "rows": []}
    with tempfile.TemporaryDirectory(prefix="lrface-cameras-") as tmp:
        gallery = Path(tmp) / "watchlist.db"
        report["watch_list"] = migrate(listed, gallery)[0]
        for count in (int(c) for c in args.cameras.split(",")):
            row = run_cameras(count, source, gallery, Path(tmp))
            report["rows"].append(row)
            run = ", ".join(f"{w['run_frames_per_s']:.1f}" for w in row["workers"])
            steady = ", ".join(f"{w['steady_frames_per_s']:.1f}" for w in row["workers"])
            print(
                f"{count} camera(s): run {run} frames/s each "
                f"({row['all_cameras_run_frames_per_s']} in all), steady {steady} "
                f"({row['all_cameras_steady_frames_per_s']} in all); tracks "
                f"{[w['tracks'] for w in row['workers']]}; load {row['load_average']}",
                flush=True,
            )
    save_measurement(report, args.out, started)


if __name__ == "__main__":
    main()
