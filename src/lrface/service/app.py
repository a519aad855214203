"""The watch-list HTTP API and web page: ``create_app(store, pipeline, config)``.

Endpoints (JSON; every ``/api`` route but ``/api/health`` wants the ``X-API-Key`` header when a
key is set): ``GET /api/health``, ``GET /api/identities``, ``POST /api/identities/{name}/photos``
(enroll one or more photos), ``GET /api/identities/{name}/thumbnail``, ``DELETE
/api/identities/{name}``, ``POST /api/search`` (a probe image, top-k for every face, with the
encoder that served it, the face's size and the open-set decision), ``POST /api/verify``
(two images). ``/`` is the web page, ``/docs`` the OpenAPI documentation. Errors are
``{"error": message}``; an unexpected one is logged with its traceback here and answered with
a bare 500.

The faiss index is built from the store at start. Changes made through the app are applied
to it at once; changes by other processes (an ``lrface gallery enroll`` into the same database)
are seen through the store's generation counter, checked before every search.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lrface.constants import __version__
from lrface.data.images import BadImageError, decode_rgb
from lrface.enrolment import Photo, enrol_photos
from lrface.pipeline import (
    Calibration,
    EmbeddedFace,
    FaceInputError,
    FacePipeline,
    answer_faces,
)
from lrface.search.decision import gallery_searcher
from lrface.search.gallery import Gallery
from lrface.search.normalize import Normalizer
from lrface.search.store import Enrolment, GalleryStore
from lrface.service.security import API_KEY_HEADER, SecurityError, key_matches, validate_name

log = logging.getLogger("lrface.service")
STATIC = Path(__file__).parent / "static"


@dataclass
class ServiceConfig:
    """Limits and authentication of one server."""

    api_key: str | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_files: int = 20
    max_k: int = 50
    max_video_bytes: int = 64 * 1024 * 1024


class ApiError(Exception):
    """An answer other than 200: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


class WatchList:
    """The store, its faiss index kept in step, and the pipeline; thread-safe."""

    def __init__(
        self, store: GalleryStore, pipeline: FacePipeline, normalizer: Normalizer | None = None
    ):
        self.store = store
        self.pipeline = pipeline
        self.normalizer = normalizer
        self._lock = threading.Lock()  # store connection + index
        self._infer = threading.Lock()  # one image through the models at a time
        self._generation = store.generation()
        self._gallery = store.load_gallery(normalizer)

    def _in_step(self) -> Gallery:
        """The index, rebuilt first if another process changed the store (under the lock)."""
        generation = self.store.generation()
        if generation != self._generation:
            self._gallery = self.store.load_gallery(self.normalizer)
            self._generation = generation
        return self._gallery

    def _applied(self, generation: int, apply: Callable[[Gallery], object]) -> None:
        """Apply our own committed change; rebuild if another writer committed in between."""
        if generation == self._generation + 1:
            apply(self._gallery)
            self._generation = generation
        else:
            self._in_step()

    def embed(self, image: np.ndarray, policy: str | None = None) -> list[EmbeddedFace]:
        with self._infer:
            return self.pipeline.embed_image(image, policy)

    def verify(self, a: np.ndarray, b: np.ndarray, calibration: list[Calibration]):
        with self._infer:
            return self.pipeline.verify(a, b, calibration=calibration or None)

    def known(self, name: str) -> set[str]:
        """SHA-256 of the photos already enrolled for ``name``."""
        with self._lock:
            return self.store.enrolled_hashes(name)

    def add(self, name: str, enrolments: list[Enrolment]) -> int:
        """Store ``enrolments`` and add them to the index; the number actually added."""
        with self._lock:
            added, generation = self.store.add(name, enrolments)
            if added == len(enrolments):
                vectors = np.stack([e.embedding for e in enrolments])
                self._applied(generation, lambda g: g.add(name, vectors))
            else:  # a concurrent request enrolled some of the same photos first
                self._in_step()
            if added and self.normalizer is not None:  # gallery-side statistics, stored
                self.store.put_identity_stats({name: self._gallery.identity_stats(name)})
        return added

    def remove(self, name: str) -> None:
        with self._lock:
            generation = self.store.remove(name)
            self._applied(generation, lambda g: g.remove(name))

    def search_top(self, embeddings: np.ndarray, k: int, probes=None) -> list[list]:
        """A ``lrface.search.decision.Searcher`` over the index kept in step (``probes``: each
        row's ``FaceRef``, scored by the normalizer where it covers the encoder)."""
        with self._lock:
            return gallery_searcher(self._in_step())(embeddings, k, probes)

    def search_raw(self, embeddings: np.ndarray, k: int, probes=None) -> list[list]:
        """The same by cosine whatever the probes (``/api/watch``'s tracks, as ``lrface watch``
        scores them by default: AS-norm track thresholds raised a false alarm on real footage
        where raw ones did not, docs/openset.md)."""
        return self.search_top(embeddings, k)

    def scoring_for(self, encoder: str) -> str:
        """How searches of this encoder's probes are scored (``Gallery.scoring_for``)."""
        with self._lock:
            return self._in_step().scoring_for(encoder)

    def size(self) -> int:
        with self._lock:
            return len(self._in_step())

    def identities(self):
        with self._lock:
            return self.store.identities()

    def thumbnail(self, name: str) -> bytes | None:
        with self._lock:
            return self.store.thumbnail(name)


def create_app(
    store: GalleryStore,
    pipeline: FacePipeline,
    config: ServiceConfig | None = None,
    calibrations: list[Calibration] | None = None,
    watch_calibrations: list[Calibration] | None = None,
    normalizer: Normalizer | None = None,
) -> FastAPI:
    """The app serving ``store`` through ``pipeline``. ``calibrations`` (the student's and the
    teacher's, as ``lrface.pipeline.default_calibrations`` finds them) decide ``/api/verify``
    and each searched face's open-set ``decision`` (known or unknown); without them the
    decision says it is undecided and why. ``watch_calibrations``
    (``lrface.pipeline.watch_calibrations``: track calibrations, then single-face ones) judge
    ``/api/watch``'s tracks, for the gallery's size at each upload, as ``lrface watch`` does;
    without them, ``calibrations``. ``normalizer`` (``lrface.pipeline.search_normalizer``)
    scores ``/api/search`` (its calibrations must include ones set on that scoring);
    ``/api/watch``'s tracks are scored by cosine, as ``lrface watch`` scores them by default."""
    config = config or ServiceConfig()
    calibrations = calibrations or []
    book = pipeline.thresholds(calibrations)
    watch_book = pipeline.thresholds(watch_calibrations or calibrations)
    watch = WatchList(store, pipeline, normalizer)
    app = FastAPI(
        title="lrface watch-list",
        version=__version__,
        description="Enroll people from photos; search probe images (CCTV stills, small faces) "
        f"against them. Send the API key in the `{API_KEY_HEADER}` header.",
    )
    app.state.watch = watch

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid request: " + "; ".join(parts)}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (logged on the server)"}, status_code=500)

    max_body = config.max_files * config.max_upload_bytes + 1024 * 1024

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return JSONResponse(
                {"error": f"request too large (limit {max_body // 2**20} MiB)"}, status_code=413
            )
        return await call_next(request)

    def require_key(request: Request) -> None:
        if config.api_key is None:
            return
        if not key_matches(request.headers.get(API_KEY_HEADER), config.api_key):
            raise ApiError(
                401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)"
            )

    def checked_name(name: str) -> str:
        try:
            return validate_name(name)
        except SecurityError as exc:
            raise ApiError(422, str(exc)) from None

    def upload_photo(upload: UploadFile) -> Photo:
        """An upload as a ``Photo`` (one over the size limit carries why, unread)."""
        filename = Path(upload.filename or "upload").name[:200]
        data = upload.file.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            limit = config.max_upload_bytes // 2**20
            return Photo(filename, None, f"file too large (limit {limit} MiB)")
        return Photo(filename, data)

    def read_image(upload: UploadFile) -> tuple[str, np.ndarray]:
        """(file name, decoded RGB image) of an upload, checked against the limits."""
        photo = upload_photo(upload)
        if photo.data is None:
            raise ApiError(413, f"{photo.source}: {photo.error}")
        try:
            return photo.source, decode_rgb(photo.data, photo.source, config.max_pixels)
        except BadImageError as exc:
            raise ApiError(413 if "too large" in exc.reason else 422, str(exc)) from None

    def embed_probe(upload: UploadFile) -> tuple[np.ndarray, list[EmbeddedFace]]:
        filename, image = read_image(upload)
        try:
            return image, watch.embed(image, "all")
        except FaceInputError as exc:
            raise ApiError(422, f"{filename}: {exc.reason}") from None

    auth = [Depends(require_key)]

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/health", summary="Liveness, gallery size, encoders; no key needed")
    def health() -> dict:
        return {
            "status": "ok",
            "version": __version__,
            "identities": watch.size(),
            "encoder": pipeline.teacher.cache_key,
            "student": pipeline.student.cache_key if pipeline.student else None,
            "size_cutoff": pipeline.size_cutoff if pipeline.student else None,
            "auth": config.api_key is not None,
            "limits": {
                "max_upload_bytes": config.max_upload_bytes,
                "max_pixels": config.max_pixels,
                "max_files": config.max_files,
                "max_k": config.max_k,
            },
        }

    @app.get("/api/identities", dependencies=auth, summary="Every enrolled identity")
    def list_identities() -> dict:
        return {
            "identities": [
                {"name": i.name, "photos": i.photos, "created": round(i.created, 3)}
                for i in watch.identities()
            ]
        }

    @app.post(
        "/api/identities/{name}/photos", dependencies=auth, summary="Enroll photos of a person"
    )
    def enroll(name: str, files: Annotated[list[UploadFile], File()]) -> dict:
        name = checked_name(name)
        if len(files) > config.max_files:
            raise ApiError(413, f"too many files ({len(files)} > {config.max_files})")
        photos = [upload_photo(upload) for upload in files]
        known = watch.known(name)
        commit = partial(watch.add, name)
        options = {"batch": None, "max_pixels": config.max_pixels}
        report = enrol_photos(watch.embed, name, photos, known, commit, "largest", **options)
        skipped = [{"file": source, "reason": reason} for source, reason in report.skipped]
        if name not in report.identities and not report.already:
            reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped) or "no files"
            raise ApiError(422, f"nothing enrolled for {name!r}: {reasons}")
        return {
            "name": name,
            "added": report.added,
            "already_enrolled": report.already,
            "skipped": skipped,
        }

    @app.get(
        "/api/identities/{name}/thumbnail",
        dependencies=auth,
        summary="JPEG of the first enrolled face",
        response_class=Response,
    )
    def thumbnail(name: str) -> Response:
        try:
            data = watch.thumbnail(name)
        except KeyError:
            raise ApiError(404, f"no identity named {name!r}") from None
        if data is None:
            raise ApiError(404, f"{name!r} has no thumbnail (enrolled from embeddings only)")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.delete("/api/identities/{name}", dependencies=auth, summary="Remove a person entirely")
    def remove(name: str) -> dict:
        try:
            watch.remove(name)
        except KeyError:
            raise ApiError(404, f"no identity named {name!r}") from None
        return {"removed": name, "identities": watch.size()}

    @app.post("/api/search", dependencies=auth, summary="Top-k identities for each probe face")
    def search(file: Annotated[UploadFile, File()], k: Annotated[int, Form()] = 5) -> dict:
        if not 1 <= k <= config.max_k:
            raise ApiError(422, f"k must be between 1 and {config.max_k}, got {k}")
        if watch.size() == 0:
            raise ApiError(409, "the gallery is empty: enroll identities first")
        image, faces = embed_probe(file)
        answers = answer_faces(
            faces, watch.search_top, k, book, store.encoder, scoring_for=watch.scoring_for
        )
        out = [answer.to_dict() for answer in answers]
        return {"image": {"width": image.shape[1], "height": image.shape[0]}, "faces": out}

    @app.post("/api/verify", dependencies=auth, summary="Are the people in two photos the same?")
    def verify(a: Annotated[UploadFile, File()], b: Annotated[UploadFile, File()]) -> dict:
        image_a, image_b = read_image(a)[1], read_image(b)[1]
        try:
            result = watch.verify(image_a, image_b, calibrations)
        except FaceInputError as exc:  # which one? only on this error path, detect again
            which = b.filename if pipeline.detector.detect(image_a) else a.filename
            raise ApiError(422, f"{which}: {exc.reason}") from None
        except ValueError as exc:  # calibration mismatch
            raise ApiError(500, str(exc)) from None
        return result.to_dict()

    @app.post("/api/watch", dependencies=auth, summary="Track events of an uploaded video")
    def watch_video(
        file: Annotated[UploadFile, File()], stride: Annotated[int, Form()] = 1
    ) -> dict:
        """``lrface watch`` on an uploaded video: one event per track (identity or unknown
        under the open-set threshold, score, top-5, frames used, encoders), as the CLI writes
        to events.jsonl. A video that breaks off returns the finished tracks and the error."""
        import tempfile

        from lrface.video.decide import BookThresholds
        from lrface.video.sources import VideoReadError, open_source
        from lrface.video.watcher import FaceWatcher

        filename = Path(file.filename or "upload").name
        if not 1 <= stride <= 100:
            raise ApiError(422, f"stride must be between 1 and 100, got {stride}")
        data = file.file.read(config.max_video_bytes + 1)
        if len(data) > config.max_video_bytes:
            limit = config.max_video_bytes // 2**20
            raise ApiError(413, f"{filename}: video too large (limit {limit} MiB)")
        if not data:
            raise ApiError(422, f"{filename}: empty upload")
        if watch.size() == 0:
            raise ApiError(409, "the gallery is empty: enroll identities first")

        calibrated = BookThresholds(watch_book, store.encoder, True, watch.size())

        def threshold(encoder: str, size: int) -> float | None:
            """The open-set threshold, or None (ranked, never unknown) without a calibration,
            as /api/search answers 'undecided'."""
            try:
                return calibrated(encoder, size)
            except ValueError:
                return None

        watcher = FaceWatcher(pipeline.detector, pipeline.embed_faces, watch.search_raw, threshold)
        events, error = [], None
        with tempfile.TemporaryDirectory(prefix="lrface-watch-") as tmp:
            path = Path(tmp) / "upload.video"
            path.write_bytes(data)
            try:
                for frame in open_source(path, stride):
                    events += watcher.process(frame)
            except VideoReadError as exc:  # name the upload, not the temporary file
                error = str(exc).replace(str(path), filename)
            events += watcher.flush()
        if error and not watcher.frames_processed:
            raise ApiError(422, error)
        return {
            "frames": watcher.frames_processed,
            "faces": watcher.faces_seen,
            "events": [event.to_dict() for event in events],
            "error": error,
        }

    return app
