"""``/``, the analyst's web page, and ``/api/health``: liveness for anyone, the gallery's size,
encoders and limits only for a caller with a key."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from lrface.constants import __version__
from lrface.service.context import ServiceConfig, ServiceDep

STATIC = Path(__file__).parent.parent / "static"


def router(config: ServiceConfig) -> APIRouter:
    api = APIRouter()

    @api.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @api.get("/api/health", summary="Liveness; with a key also gallery size, encoders, limits")
    def health(request: Request, svc: ServiceDep) -> dict:
        caller = request.state.caller
        answer = {"status": "ok", "auth": config.keys.required}
        if caller is None:
            return answer
        pipe = svc.pipeline
        return answer | {
            "version": __version__,
            "identities": svc.watch.size(),
            "encoder": pipe.teacher.name,
            "encoder_key": pipe.teacher.cache_key,
            "student": pipe.student.name if pipe.student else None,
            "student_key": pipe.student.cache_key if pipe.student else None,
            "size_cutoff": pipe.size_cutoff if pipe.student else None,
            "role": caller.role,
            "limits": {
                "max_upload_bytes": config.max_upload_bytes,
                "max_pixels": config.max_pixels,
                "max_work_pixels": config.max_work_pixels,
                "max_files": config.max_files,
                "max_k": config.max_k,
                "max_video_bytes": config.max_video_bytes,
            },
        }

    return api
