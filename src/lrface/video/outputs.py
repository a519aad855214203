"""What ``lrface watch`` writes: ``events.jsonl`` and ``tracks.csv`` (one line per finished
track, flushed as each track ends, so an interruption keeps every finished one), a thumbnail
of each track's best crop, optionally an annotated video, and (``--camera``) a row per track
in the gallery store's shared event log (``StoreEventLog``)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

from lrface.detect import Face
from lrface.search.store import EventRecord, GalleryStore
from lrface.video.watcher import TrackEvent

CSV_FIELDS = (
    "track_id",
    "first_frame",
    "last_frame",
    "first_time",
    "last_time",
    "identity",
    "score",
    "threshold",
    "frames_used",
    "median_face_px",
    "encoders",
    "top5",
    "thumbnail",
)


class EventWriter:
    """Appends events to ``out/events.jsonl`` and ``out/tracks.csv``, crops to
    ``out/thumbnails/track-<id>.png``."""

    def __init__(self, out: Path, log: StoreEventLog | None = None):
        self.out = Path(out)
        self.log = log
        (self.out / "thumbnails").mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.out / "events.jsonl", "w")  # noqa: SIM115 (closed in close())
        self._csv_file = open(self.out / "tracks.csv", "w", newline="")  # noqa: SIM115
        self._csv = csv.DictWriter(self._csv_file, CSV_FIELDS)
        self._csv.writeheader()
        self.count = 0

    def write(self, event: TrackEvent) -> None:
        thumb = Path("thumbnails") / f"track-{event.track_id:05d}.png"
        if event.crop is not None and event.crop.size:
            cv2.imwrite(str(self.out / thumb), np.ascontiguousarray(event.crop[:, :, ::-1]))
        row = {**event.to_dict(), "thumbnail": str(thumb)}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        self._csv.writerow(
            {
                **{k: row[k] for k in CSV_FIELDS if k in row},
                "encoders": ";".join(f"{k}:{n}" for k, n in row["encoders"].items()),
                "top5": ";".join(f"{m['name']}:{m['score']}" for m in row["top"]),
            }
        )
        self._csv_file.flush()
        if self.log is not None:
            self.log.write(event)
        self.count += 1

    def close(self) -> None:
        self._jsonl.close()
        self._csv_file.close()


def run_key(source: str, started: float) -> str:
    """Which run of a camera's worker its events belong to. A video file or folder gives the
    same key every time it is watched (its path, size and modification time), so a worker
    restarted on it logs each track once; a live camera's run starts with the worker."""
    path = Path(source)
    if not source.isdigit() and path.exists():
        stat = path.stat()
        identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
        return "file:" + hashlib.sha256(identity).hexdigest()[:16]
    return f"live:{started:.6f}"


def jpeg(image: np.ndarray | None, quality: int = 90) -> bytes | None:
    """An RGB image as JPEG bytes (None for no image)."""
    if image is None or not image.size:
        return None
    ok, data = cv2.imencode(
        ".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return data.tobytes() if ok else None


class StoreEventLog:
    """Logs each finished track of ``camera`` into ``store``'s event log: time logged,
    identity or unknown, score, the threshold it was judged by, the whole event and a JPEG of
    the best crop. A track already logged for this run (a restarted worker) is not logged again
    (``repeats`` counts them)."""

    def __init__(self, store: GalleryStore, camera: str, run: str):
        if not camera.strip():
            raise ValueError("--camera: a camera needs a name")
        self.store = store
        self.camera = camera
        self.run = run
        self.repeats = 0

    def write(self, event: TrackEvent) -> None:
        decision = event.decision
        record = EventRecord(
            self.camera,
            self.run,
            event.track_id,
            time.time(),
            decision.identity,
            decision.score
            if decision.score is not None and math.isfinite(decision.score)
            else None,
            decision.threshold,
            event.to_dict(),
            jpeg(event.crop),
        )
        if self.store.add_event(record) is None:
            self.repeats += 1


class AnnotatedVideo:
    """An mp4 (MPEG-4 part 2, ``mp4v``) of the processed frames with boxes, track ids and the
    track's current best identity drawn on."""

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray, labelled: list[tuple[Face, str]]) -> None:
        canvas = np.ascontiguousarray(image[:, :, ::-1])
        h, w = canvas.shape[:2]
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"{self.path}: cannot write a video here")
        thick = max(1, round(max(h, w) / 500))
        for face, text in labelled:
            x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
            colour = (0, 0, 255) if text.endswith("unknown") else (0, 220, 0)
            cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, thick)
            cv2.putText(
                canvas,
                text,
                (x1, max(y1 - 4, 12)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4 * thick,
                colour,
                thick,
                cv2.LINE_AA,
            )
        self._writer.write(canvas)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
