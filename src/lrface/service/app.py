"""The watch-list HTTP API and web page: ``create_app(store, pipeline, config)``.

Endpoints (JSON; every one but ``/`` and ``/api/health`` wants the ``X-API-Key`` header when
keys are set, checked before the body is read): ``GET /api/health``, ``GET /api/identities``,
``POST /api/identities/{name}/photos``, ``GET /api/identities/{name}/thumbnail``, ``DELETE
/api/identities/{name}``, ``POST /api/search``, ``POST /api/verify``, ``POST /api/watch``,
``GET /api/watch/videos/{id}``, ``GET /api/audit`` (admin key). ``/`` is the web page; the
OpenAPI schema is at ``/openapi.json`` (no ``/docs`` page: it loads its scripts from a CDN,
and the server must work offline). Errors are ``{"error": message}``; an unexpected one is
logged with its traceback here and answered with a bare 500.

The routes live in ``lrface.service.routes`` (the shared event log's, ``GET /api/events``,
``/api/events/{id}/thumbnail`` and the ``/api/events/stream`` feed, in
``lrface.service.events``); what they share in ``lrface.service.context``. The faiss index is
kept in step with every process's changes (``lrface.search.sync.LiveGallery``).
Heavy work runs on the bounded lanes of ``lrface.service.work``; shutting down (SIGTERM,
SIGINT) closes the pool and the gallery, which checkpoints and truncates its WAL.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lrface.constants import __version__
from lrface.pipeline import Calibration, FacePipeline
from lrface.search.normalize import Normalizer
from lrface.search.store import GalleryStore
from lrface.service.context import ApiError, Service, ServiceConfig
from lrface.service.events import events_router
from lrface.service.guard import RequestGuard
from lrface.service.routes import admin, identities, page, search, watch
from lrface.service.security import API_KEY_HEADER
from lrface.service.watchlist import WatchList
from lrface.service.work import WorkPool

__all__ = ["ApiError", "ServiceConfig", "create_app"]

log = logging.getLogger("lrface.service")


def create_app(
    store: GalleryStore,
    pipeline: FacePipeline,
    config: ServiceConfig | None = None,
    calibrations: list[Calibration] | None = None,
    watch_calibrations: list[Calibration] | None = None,
    normalizer: Normalizer | None = None,
) -> FastAPI:
    """The app serving ``store`` through ``pipeline``; it owns ``store`` from now on and closes
    it at shutdown. ``calibrations`` (the student's and the teacher's, as
    ``lrface.pipeline.default_calibrations`` finds them) decide ``/api/verify`` and each
    searched face's open-set ``decision`` (known or unknown); without them the decision says it
    is undecided and why. ``watch_calibrations`` (``lrface.pipeline.watch_calibrations``: track
    calibrations, then single-face ones) judge ``/api/watch``'s tracks, for the gallery's size
    at each upload, as ``lrface watch`` does; without them, ``calibrations``. ``normalizer``
    (``lrface.pipeline.search_normalizer``) scores ``/api/search`` (its calibrations must
    include ones set on that scoring); ``/api/watch``'s tracks are scored by cosine, as
    ``lrface watch`` scores them by default."""
    config = config or ServiceConfig()
    svc = Service(
        config,
        pipeline,
        WatchList(store, normalizer),
        WorkPool(config.workers, queue=config.queue),
        calibrations or [],
        watch_calibrations or [],
    )
    videos = watch.AnnotatedVideos()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        try:
            yield
        finally:  # uvicorn's graceful shutdown on SIGTERM / SIGINT comes through here
            videos.close()
            svc.close()

    app = FastAPI(
        title="lrface watch-list",
        version=__version__,
        description="Enroll people from photos; search probe images (CCTV stills, small faces) "
        f"and videos against them. Send the API key in the `{API_KEY_HEADER}` header.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = svc
    app.add_middleware(RequestGuard, keys=config.keys, limit=config.body_limit)
    app.include_router(page.router(config))
    app.include_router(identities.router(config))
    app.include_router(search.router(config))
    app.include_router(watch.router(config, videos))
    app.include_router(admin.router(config))
    app.include_router(events_router(store, [], ApiError))  # the guard checks the key

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and request.url.path.startswith("/api/identities/"):
            message = "no such endpoint under /api/identities (names cannot hold '/')"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

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

    return app
