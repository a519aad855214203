"""What ``lrface watch`` writes: ``events.jsonl`` and ``tracks.csv`` (one line per finished
track, flushed as each track ends, so an interruption keeps every finished one), a thumbnail
of each track's best crop, optionally an annotated video that browsers play, and
(``--camera``) a row per track in the gallery store's shared event log (``StoreEventLog``).

Every file is created owner-only (0600, folders 0700), like the galleries: crops and names of
people are biometric data."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np

from lrface.detect import Face
from lrface.search.store import EventRecord, GalleryStore
from lrface.video.watcher import FaceWatcher, TrackEvent

ANNOTATED_VIDEO = "annotated.webm"
"""The annotated video's file name: WebM, VP8. The opencv-python wheel's FFmpeg has no H.264
encoder (``avc1`` does not open) and its MPEG-4 part 2 (``mp4v``), which it does have, is
refused by Chromium (``DEMUXER_ERROR_NO_SUPPORTED_STREAMS``); VP8 plays in every current
browser and encodes faster than VP9."""
VIDEO_FOURCC = "VP80"


def private_file(path: Path, mode: str = "w", **kwargs):
    """``open(path, mode)`` of a file created owner-only (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    return os.fdopen(fd, mode, **kwargs)


def private_dir(path: Path) -> Path:
    """``path`` and missing parents created, ``path`` itself mode 0700."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


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
        private_dir(self.out)
        private_dir(self.out / "thumbnails")
        self._jsonl = private_file(self.out / "events.jsonl")
        self._csv_file = private_file(self.out / "tracks.csv", newline="")
        self._csv = csv.DictWriter(self._csv_file, CSV_FIELDS)
        self._csv.writeheader()
        self.count = 0

    def write(self, event: TrackEvent) -> None:
        thumb = Path("thumbnails") / f"track-{event.track_id:05d}.png"
        if event.crop is not None and event.crop.size:
            ok, png = cv2.imencode(".png", np.ascontiguousarray(event.crop[:, :, ::-1]))
            if ok:
                with private_file(self.out / thumb, "wb") as f:
                    f.write(png.tobytes())
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


def frame_labels(watcher: FaceWatcher) -> list[tuple[Face, str, bool]]:
    """(face, label, known) for each face of the frame ``watcher`` processed last: the label is
    the track id, its current best identity (or unknown) and that identity's score."""
    out = []
    for track_id, face in watcher.current:
        decision = watcher.label(track_id)
        known = decision is not None and not decision.unknown
        name = decision.identity if known else "unknown"
        score = f" {decision.score:.2f}" if decision is not None and decision.top else ""
        out.append((face, f"#{track_id} {name}{score}", known))
    return out


class AnnotatedVideo:
    """A WebM (VP8) video of the processed frames with each face's box and a label (track id,
    name or unknown, score) on a dark band, and the frame's time top left; text is sized
    to the frame (about 20 px high at 720p), so it stays readable when the video is shown."""

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None

    def write(
        self, image: np.ndarray, labelled: list[tuple[Face, str, bool]], time: float | None = None
    ) -> None:
        canvas = np.ascontiguousarray(image[:, :, ::-1])
        h, w = canvas.shape[:2]
        if self._writer is None:
            private_dir(self.path.parent)
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC)
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"{self.path}: cannot write a video here")
            self.path.chmod(0o600)
        # FONT_HERSHEY_SIMPLEX at 0.7: ~20 px at 720p; at least 0.5 (small clips get enlarged)
        scale = max(0.5, max(h, w * 9 / 16) / 720 * 0.7)
        thick = max(1, round(2 * scale / 0.7))
        for face, text, known in labelled:
            x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
            colour = (0, 220, 0) if known else (0, 0, 255)
            cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), colour, thick)
            _text(canvas, text, (x1, y1), scale, thick, colour)
        if time is not None:
            _text(canvas, f"{time:.2f} s", (0, 0), scale, thick, (255, 255, 255))  # top left
        self._writer.write(canvas)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def _text(
    canvas: np.ndarray,
    text: str,
    corner: tuple[int, int],
    scale: float,
    thick: int,
    colour: tuple[int, int, int],
) -> None:
    """``text`` on a black band whose bottom-left corner is ``corner`` (kept inside the frame)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    pad = max(2, thick)
    x = min(max(corner[0], 0), max(canvas.shape[1] - tw - 2 * pad, 0))
    bottom = min(max(corner[1], th + base + 2 * pad), canvas.shape[0])
    cv2.rectangle(
        canvas, (x, bottom - th - base - 2 * pad), (x + tw + 2 * pad, bottom), (0, 0, 0), -1
    )
    cv2.putText(
        canvas, text, (x + pad, bottom - base - pad), font, scale, colour, thick, cv2.LINE_AA
    )
