"""``/api/identities``: list, enroll photos, thumbnail, remove. Names follow
``lrface.search.names`` (one rule set with ``lrface gallery enroll``); a name is found by its
key, so ``tony blair`` reaches ``Tony_Blair``; a name may hold ``/`` only to be refused clearly."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from lrface.pipeline import thumbnail_jpeg
from lrface.search.names import InvalidName, normalize_name
from lrface.search.store import Enrolment, NameConflict
from lrface.service.context import (
    ApiError,
    CallerDep,
    Service,
    ServiceConfig,
    ServiceDep,
    Upload,
    analyse,
    read_upload,
    upload_name,
)
from lrface.service.events import jpeg_response


def checked_name(name: str) -> str:
    """The name in its stored form, or a 422 saying which rule it breaks."""
    try:
        return normalize_name(name)
    except InvalidName as exc:
        raise ApiError(422, str(exc)) from None


def enrolled(svc: Service, name: str) -> str:
    """The enrolled spelling of ``name``, or a 404."""
    stored = svc.watch.resolve(name)
    if stored is None:
        raise ApiError(404, f"no identity named {name[:120]!r}")
    return stored


def router(config: ServiceConfig) -> APIRouter:
    api = APIRouter()

    @api.get("/api/identities", summary="Every enrolled identity")
    def list_identities(svc: ServiceDep) -> dict:
        return {
            "identities": [
                {"name": i.name, "photos": i.photos, "created": round(i.created, 3)}
                for i in svc.watch.identities()
            ]
        }

    @api.post("/api/identities/{name:path}/photos", summary="Enroll photos of a person")
    async def enroll(
        name: str,
        files: Annotated[list[UploadFile], File()],
        svc: ServiceDep,
        who: CallerDep,
    ) -> dict:
        """The largest face of each photo; photos already enrolled for the name (same bytes)
        are skipped, bad ones listed in ``skipped``; ``warnings`` name other identities that
        already hold one of the photos (same bytes or a near-identical face)."""
        name = checked_name(name)
        existing = await run_in_threadpool(svc.watch.resolve, name)
        if existing is not None and existing != name:
            raise ApiError(409, str(NameConflict(name, existing)))
        if len(files) > config.max_files:
            raise ApiError(413, f"too many files ({len(files)} > {config.max_files})")
        known = await run_in_threadpool(svc.watch.known, name)
        enrolments: list[Enrolment] = []
        skipped: list[dict] = []
        warnings: list[str] = []
        uploads: list[Upload] = []
        already = 0
        for file in files:
            try:
                upload = await read_upload(file, config)
                if upload.sha256 in known:
                    already += 1
                    continue
                heavy = upload.declared_pixels > config.heavy_pixels
                enrolment = await svc.run(lambda u=upload: _enrolment(svc, u), heavy)
            except ApiError as exc:
                if exc.status == 503:
                    raise
                filename = upload_name(file)
                reason = exc.message.removeprefix(f"{filename}: ")
                skipped.append({"file": filename, "reason": reason})
                continue
            known.add(upload.sha256)
            uploads.append(upload)
            enrolments.append(enrolment)
            warnings += await run_in_threadpool(
                svc.watch.duplicates, name, upload.filename, upload.sha256, enrolment.embedding
            )
        if not enrolments and not already:
            reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped) or "no files"
            raise ApiError(422, f"nothing enrolled for {name!r}: {reasons}")
        try:
            added = await run_in_threadpool(svc.watch.add, name, enrolments) if enrolments else 0
        except NameConflict as exc:  # another request enrolled a spelling in between
            raise ApiError(409, str(exc)) from None
        answer = {
            "name": name,
            "added": added,
            "already_enrolled": already,
            "skipped": skipped,
            "warnings": warnings,
        }
        await svc.record(
            who,
            "enroll",
            name,
            {"photos": [u.audit_ref() for u in uploads]},
            {
                "added": added,
                "already_enrolled": already,
                "skipped": len(skipped),
                "warnings": len(warnings),
            },
        )
        return answer

    @api.get(
        "/api/identities/{name:path}/thumbnail",
        summary="JPEG of the first enrolled face",
        response_class=Response,
    )
    def thumbnail(name: str, svc: ServiceDep) -> Response:
        stored = enrolled(svc, name)
        return jpeg_response(
            lambda: svc.watch.thumbnail(stored),
            ApiError(404, f"no identity named {name!r}"),  # removed in between
            ApiError(404, f"{stored!r} has no thumbnail (enrolled from embeddings only)"),
        )

    @api.delete("/api/identities/{name:path}", summary="Remove a person entirely, for good")
    async def remove(
        name: str,
        svc: ServiceDep,
        who: CallerDep,
    ) -> dict:
        """Everything stored for the identity is erased from the database files (not only
        unlinked), and the audit log's earlier entries naming it are redacted."""
        stored = await run_in_threadpool(enrolled, svc, name)
        try:
            await run_in_threadpool(svc.watch.remove, stored, who.label)
        except KeyError:
            raise ApiError(404, f"no identity named {name!r}") from None
        return {"removed": stored, "identities": await run_in_threadpool(svc.watch.size)}

    return api


def _enrolment(svc: Service, upload: Upload) -> Enrolment:
    """The largest face of ``upload`` as an Enrolment with its thumbnail (worker thread)."""
    found = analyse(svc, upload, "largest", template=True)
    face = found.faces[0]
    thumbnail = thumbnail_jpeg(found.image, face.face)
    return Enrolment(face.embedding, upload.filename, upload.sha256, thumbnail)
