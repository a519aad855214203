"""``/api/watch``: ``lrface watch`` on an uploaded clip, on the heavy lane within the video
budget: one event per track (identity or unknown, score, time, a thumbnail of the track's best
face) and, when asked, the annotated video (WebM, which browsers play), kept for a while in a
folder only the server's user can read and fetched with the key from ``/api/watch/videos/ID``."""

from __future__ import annotations

import base64
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from lrface.data.images import fit_pixels
from lrface.search.store import file_sha256
from lrface.service.context import (
    ApiError,
    CallerDep,
    Service,
    ServiceConfig,
    ServiceDep,
    size_text,
    upload_name,
)
from lrface.video.outputs import ANNOTATED_VIDEO, AnnotatedVideo, frame_labels, private_file
from lrface.video.sources import Frame

THUMBNAIL_SIDE = 112


class AnnotatedVideos:
    """The last ``keep`` annotated videos, in a private temporary folder made at the first
    watch request (a service that never watches leaves nothing behind) and removed at close."""

    def __init__(self, keep: int = 8):
        self.keep = keep
        self._root: Path | None = None
        self._ids: list[str] = []
        self._lock = threading.RLock()  # ``root`` is read while it is held

    @property
    def root(self) -> Path:
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="lrface-watch-"))  # mode 0700
            return self._root

    def workspace(self) -> Path:
        """A new private folder for one request's upload and video."""
        return Path(tempfile.mkdtemp(dir=self.root))

    def keep_video(self, workspace: Path) -> str | None:
        """Keep ``workspace``'s annotated video under a new id (oldest dropped); None if none."""
        video = workspace / ANNOTATED_VIDEO
        if not video.is_file():
            return None
        video_id = secrets.token_hex(12)
        video.rename(self.root / f"{video_id}.webm")
        with self._lock:
            self._ids.append(video_id)
            while len(self._ids) > self.keep:
                (self.root / f"{self._ids.pop(0)}.webm").unlink(missing_ok=True)
        return video_id

    def path(self, video_id: str) -> Path | None:
        with self._lock:  # an id is kept only once the folder exists: asking makes none
            return self._root / f"{video_id}.webm" if video_id in self._ids else None

    def close(self) -> None:
        with self._lock:
            root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def thumbnail_data_url(crop: np.ndarray | None) -> str | None:
    """A track's best face as a small JPEG ``data:`` URL (RGB in), or None."""
    if crop is None or not crop.size:
        return None
    scale = THUMBNAIL_SIDE / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(crop[:, :, ::-1]))
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode() if ok else None


def router(config: ServiceConfig, videos: AnnotatedVideos) -> APIRouter:
    api = APIRouter()

    @api.post("/api/watch", summary="Track events (and an annotated video) of an uploaded clip")
    async def watch_video(
        file: Annotated[UploadFile, File()],
        svc: ServiceDep,
        who: CallerDep,
        stride: Annotated[int, Form()] = 1,
        annotate: Annotated[bool, Form()] = False,
    ) -> dict:
        """``lrface watch`` on the clip: one event per track (identity or unknown under the
        open-set threshold, score, top-5, times, frames used, encoders, ``thumbnail`` as a
        JPEG data URL), as the CLI writes to events.jsonl. A clip that breaks off, or runs past
        the video time budget, returns the finished tracks and says so in ``error``. With
        ``annotate``, ``video`` is the path of the annotated WebM."""
        filename = upload_name(file)
        if not 1 <= stride <= 100:
            raise ApiError(422, f"stride must be between 1 and 100, got {stride}")
        data = await file.read(config.max_video_bytes + 1)
        if len(data) > config.max_video_bytes:
            limit = size_text(config.max_video_bytes)
            raise ApiError(413, f"{filename}: video too large (limit {limit})")
        if not data:
            raise ApiError(422, f"{filename}: empty upload")
        if await run_in_threadpool(svc.watch.size) == 0:
            raise ApiError(409, "the gallery is empty: enroll identities first")
        workspace = videos.workspace()
        try:
            with private_file(workspace / "upload.video", "wb") as f:
                f.write(data)
            budget = config.video_budget_s
            result = await svc.run(
                lambda: _watch(svc, workspace, filename, stride, annotate, 0.9 * budget),
                heavy=True,
                budget=budget,
            )
            video_id = videos.keep_video(workspace) if annotate else None
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
        result["video"] = f"/api/watch/videos/{video_id}" if video_id else None
        await svc.record(
            who,
            "watch",
            None,
            {"video": {"sha256": file_sha256(data), "bytes": len(data)}, "stride": stride},
            {
                "frames": result["frames"],
                "events": [
                    {"identity": e["identity"], "score": e["score"]} for e in result["events"]
                ],
                "error": result["error"],
            },
        )
        return result

    @api.get(
        "/api/watch/videos/{video_id}",
        summary="An annotated video made by /api/watch (WebM)",
        response_class=FileResponse,
    )
    def annotated_video(video_id: str) -> FileResponse:
        path = videos.path(video_id)
        if path is None or not path.is_file():
            raise ApiError(
                404, f"no annotated video {video_id[:40]!r} (only the last {videos.keep} are kept)"
            )
        return FileResponse(path, media_type="video/webm", headers={"Cache-Control": "no-store"})

    return api


def _bounded(frame: Frame, work_pixels: int) -> Frame:
    """``frame`` brought down to at most ``work_pixels`` (a 4K clip is watched at about 1440p
    by default), so a video's memory and detector time per frame are bounded like a photo's."""
    height, width = frame.image.shape[:2]
    size = fit_pixels(width, height, work_pixels)
    if size is None:
        return frame
    image = cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA)
    return Frame(frame.index, frame.time, image)


def _watch(
    svc: Service, workspace: Path, filename: str, stride: int, annotate: bool, seconds: float
) -> dict:
    """The watcher over the uploaded clip in ``workspace`` (worker thread), stopping with an
    error after ``seconds``."""
    from lrface.video.decide import BookThresholds
    from lrface.video.sources import VideoReadError, open_source
    from lrface.video.watcher import FaceWatcher

    watch = svc.watch
    path = workspace / "upload.video"

    calibrated = BookThresholds(svc.watch_book, watch.store.encoder, True, watch.size())

    def threshold(encoder: str, size: int, faces: int | None = None) -> float | None:
        """The open-set threshold, or None (ranked, never unknown) without a calibration,
        as /api/search answers 'undecided'."""
        try:
            return calibrated(encoder, size, faces)
        except ValueError:
            return None

    pipe = svc.pipeline
    # tracks by cosine, as lrface watch judges them by default (docs/openset.md)
    watcher = FaceWatcher(pipe.detector, pipe.embed_faces, watch.search_raw, threshold)
    events, error, video = [], None, None
    deadline = time.monotonic() + seconds
    try:
        frames = open_source(path, stride)
        if annotate:
            video = AnnotatedVideo(workspace / ANNOTATED_VIDEO, frames.fps / stride)
        for frame in frames:
            frame = _bounded(frame, svc.config.max_work_pixels)
            events += watcher.process(frame)
            if video is not None:
                video.write(frame.image, frame_labels(watcher), frame.time)
            if time.monotonic() > deadline:
                error = (
                    f"{filename}: stopped after {watcher.frames_processed} frames, at "
                    f"{frame.time:.1f} s: the request's time budget ({seconds:.0f} s) ran out"
                )
                break
    except VideoReadError as exc:  # name the upload, not the temporary file
        error = str(exc).replace(str(path), filename)
    finally:
        if video is not None:
            video.close()
    events += watcher.flush()
    if error and not watcher.frames_processed:
        raise ApiError(422, error)
    return {
        "frames": watcher.frames_processed,
        "faces": watcher.faces_seen,
        "events": [e.to_dict() | {"thumbnail": thumbnail_data_url(e.crop)} for e in events],
        "error": error,
    }
