"""``/api/search`` (who is in this probe?) and ``/api/verify`` (the same person in two photos?).
Both decode and embed on the work pool within the request's budget, and are audited by the
hashes of their images, never the images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from lrface.pipeline import FaceInputError, answer_faces
from lrface.service.context import (
    ApiError,
    CallerDep,
    ServiceConfig,
    ServiceDep,
    analysed,
    decode_upload,
    read_upload,
)


def router(config: ServiceConfig) -> APIRouter:
    api = APIRouter()

    @api.post("/api/search", summary="Top-k identities for each probe face")
    async def search(
        file: Annotated[UploadFile, File()],
        svc: ServiceDep,
        who: CallerDep,
        k: Annotated[int, Form()] = 5,
    ) -> dict:
        """For every face: its box (in the upload's pixels), size, the encoder that served it,
        the top-k matches and the open-set ``decision``. Images above the work budget are
        analysed downscaled (``image.analysed_scale`` > 1)."""
        if not 1 <= k <= config.max_k:
            raise ApiError(422, f"k must be between 1 and {config.max_k}, got {k}")
        if await run_in_threadpool(svc.watch.size) == 0:
            raise ApiError(409, "the gallery is empty: enroll identities first")
        upload = await read_upload(file, config)
        found = await analysed(svc, upload, "all", search=True)
        faces = found.reported()
        answers = await run_in_threadpool(
            answer_faces, faces, svc.watch.search_top, k, svc.book, svc.watch.store.encoder,
            scoring_for=svc.watch.scoring_for,
        )  # fmt: skip
        out = [answer.to_dict() for answer in answers]
        width, height = found.size
        decided = [
            {key: a.decision.to_dict()[key] for key in ("identity", "score", "threshold")}
            for a in answers
        ]
        await svc.record(
            who, "search", None, {"probe": upload.audit_ref(), "k": k}, {"faces": decided}
        )
        return {
            "image": {"width": width, "height": height, "analysed_scale": round(found.scale, 4)},
            "faces": out,
        }

    @api.post("/api/verify", summary="Are the people in two photos the same?")
    async def verify(
        a: Annotated[UploadFile, File()],
        b: Annotated[UploadFile, File()],
        svc: ServiceDep,
        who: CallerDep,
    ) -> dict:
        first, second = await read_upload(a, config), await read_upload(b, config)

        def job() -> dict:
            image_a, image_b = decode_upload(first, config)[0], decode_upload(second, config)[0]
            try:
                return svc.pipeline.verify(
                    image_a, image_b, calibration=svc.calibrations or None
                ).to_dict()
            except FaceInputError as exc:  # which one? detect again, on this path only
                which = second if svc.pipeline.detector.detect(image_a) else first
                raise ApiError(422, f"{which.filename}: {exc.reason}") from None
            except ValueError as exc:  # calibration mismatch
                raise ApiError(500, str(exc)) from None

        heavy = max(first.declared_pixels, second.declared_pixels) > config.heavy_pixels
        result = await svc.run(job, heavy)
        await svc.record(
            who,
            "verify",
            None,
            {"a": first.audit_ref(), "b": second.audit_ref()},
            {"score": result["score"], "same": result["same"]},
        )
        return result

    return api
