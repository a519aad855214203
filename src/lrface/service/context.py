"""What every route of the service shares: its limits (``ServiceConfig``), the ``Service`` it
serves (watch-list, pipeline, thresholds, work pool, keys), the error it answers with, and the
bounded reading and analysis of uploaded images."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from lrface.data.images import BadImageError, decode_bounded, image_size
from lrface.pipeline import Calibration, EmbeddedFace, FaceInputError, FacePipeline
from lrface.search.store import file_sha256
from lrface.service.security import Caller, Keys
from lrface.service.watchlist import WatchList
from lrface.service.work import Busy, WorkPool

FORM_OVERHEAD = 64 * 1024
"""Bytes allowed in a request beyond its files: multipart headers and form fields."""


@dataclass
class ServiceConfig:
    """Limits, authentication and work bounds of one server.

    ``max_pixels``: images declaring more are refused before decoding; ``max_work_pixels``:
    larger ones are analysed downscaled to this (bounded memory and detector time; boxes are
    reported in the original's pixels). ``workers``: light-lane workers (default: half the
    CPUs, at least 2); ``heavy_pixels``: images declaring more go to the one-worker heavy lane.
    ``request_budget_s`` / ``video_budget_s``: time budget of an image / a video request."""

    api_key: str | None = None
    admin_key: str | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_work_pixels: int = 4_000_000
    max_files: int = 20
    max_k: int = 50
    max_video_bytes: int = 64 * 1024 * 1024
    workers: int = 2
    heavy_pixels: int = 1_000_000
    queue: int = 32
    request_budget_s: float = 30.0
    video_budget_s: float = 300.0

    @property
    def keys(self) -> Keys:
        return Keys(self.api_key, self.admin_key)

    def body_limit(self, method: str, path: str) -> int:
        """The most body bytes the endpoint at ``method path`` takes (the request guard's)."""
        if method == "POST":
            if path == "/api/search":
                return self.max_upload_bytes + FORM_OVERHEAD
            if path == "/api/verify":
                return 2 * (self.max_upload_bytes + FORM_OVERHEAD)
            if path == "/api/watch":
                return self.max_video_bytes + FORM_OVERHEAD
            if path.startswith("/api/identities/") and path.endswith("/photos"):
                return self.max_files * (self.max_upload_bytes + FORM_OVERHEAD)
        return FORM_OVERHEAD


class ApiError(Exception):
    """An answer other than 200: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass
class Service:
    """One server's state: what the routes serve and how."""

    config: ServiceConfig
    pipeline: FacePipeline
    watch: WatchList
    pool: WorkPool
    calibrations: list[Calibration] = field(default_factory=list)
    watch_calibrations: list[Calibration] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.book = self.pipeline.thresholds(self.calibrations)
        self.watch_book = self.pipeline.thresholds(self.watch_calibrations or self.calibrations)

    async def record(
        self, caller: Caller, action: str, target: str | None, request: dict, answer: dict
    ) -> None:
        """One audit-log entry (off the event loop: it is a committed write)."""
        await run_in_threadpool(self.watch.audit, caller.label, action, target, request, answer)

    async def run(self, job, heavy: bool, budget: float | None = None):
        """``job()`` on the work pool within the request's time budget (503 past it)."""
        try:
            return await self.pool.run(job, heavy, budget or self.config.request_budget_s)
        except Busy as exc:
            raise ApiError(503, exc.message) from None

    def close(self) -> None:
        self.pool.close()
        self.watch.close()


def size_text(size: int) -> str:
    """``size`` bytes for a message: '10 MiB', '3.9 KiB'."""
    if size >= 2**20:
        return f"{size / 2**20:.3g} MiB"
    return f"{size / 2**10:.3g} KiB"


def service(request: Request) -> Service:
    """The Service of the app serving ``request`` (a FastAPI dependency)."""
    return request.app.state.service


def caller(request: Request) -> Caller:
    """Who sent ``request``, as the key guard found it (a FastAPI dependency)."""
    return request.state.caller


ServiceDep = Annotated[Service, Depends(service)]
"""A route parameter receiving the app's Service."""
CallerDep = Annotated[Caller, Depends(caller)]
"""A route parameter receiving the request's Caller."""


def upload_name(upload: UploadFile) -> str:
    return Path(upload.filename or "upload").name[:200]


@dataclass
class Upload:
    """An uploaded image's bytes, checked against the size limit, with its name and hash."""

    filename: str
    data: bytes
    sha256: str

    @property
    def declared_pixels(self) -> int:
        size = image_size(self.data)
        return 0 if size is None else size[0] * size[1]

    def audit_ref(self) -> dict:
        """How the audit log describes it: hash and size, never the content (nor its name,
        which may name a person)."""
        return {"sha256": self.sha256, "bytes": len(self.data)}


async def read_upload(upload: UploadFile, config: ServiceConfig) -> Upload:
    filename = upload_name(upload)
    data = await upload.read(config.max_upload_bytes + 1)
    if len(data) > config.max_upload_bytes:
        raise ApiError(
            413, f"{filename}: file too large (limit {size_text(config.max_upload_bytes)})"
        )
    return Upload(filename, data, file_sha256(data))


@dataclass
class Analysed:
    """A decoded (perhaps downscaled) image and its faces, in its own pixels; ``size`` is the
    original's (width, height), ``scale`` maps the image's pixels to the original's."""

    image: np.ndarray
    faces: list[EmbeddedFace]
    size: tuple[int, int]
    scale: float

    def reported(self) -> list[EmbeddedFace]:
        """The faces with boxes and landmarks in the original's pixels, as answers give them."""
        return [_rescaled(f, self.scale) for f in self.faces]


def decode_upload(upload: Upload, config: ServiceConfig) -> tuple[np.ndarray, float]:
    """The upload's RGB image within the pixel budgets, and its scale (ApiError when bad)."""
    try:
        return decode_bounded(
            upload.data, upload.filename, config.max_pixels, config.max_work_pixels
        )
    except BadImageError as exc:
        raise ApiError(413 if "too large" in exc.reason else 422, str(exc)) from None


def analyse(
    service: Service,
    upload: Upload,
    policy: str | None,
    template: bool = False,
    search: bool = False,
) -> Analysed:
    """Decode ``upload`` within the budgets and embed its faces (worker thread; ``template``:
    for enrolment, ``search``: for a watch-list search, ``FacePipeline.embed_image``)."""
    image, scale = decode_upload(upload, service.config)
    try:
        faces = service.pipeline.embed_image(image, policy, template, search)
    except FaceInputError as exc:
        raise ApiError(422, f"{upload.filename}: {exc.reason}") from None
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return Analysed(image, faces, size, scale)


async def analysed(
    service: Service, upload: Upload, policy: str | None, search: bool = False
) -> Analysed:
    """``analyse`` on the work pool: the heavy lane for images declaring many pixels."""
    heavy = upload.declared_pixels > service.config.heavy_pixels
    return await service.run(lambda: analyse(service, upload, policy, search=search), heavy)


def _rescaled(face: EmbeddedFace, scale: float) -> EmbeddedFace:
    """``face`` with its box and landmarks in the original image's pixels."""
    if scale == 1.0:
        return face
    box = dataclasses.replace(
        face.face, box=face.face.box * scale, landmarks=face.face.landmarks * scale
    )
    return dataclasses.replace(face, face=box)
