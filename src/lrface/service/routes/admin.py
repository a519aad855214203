"""``/api/audit``: the audit log, newest first, for the admin key only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from lrface.service.context import ApiError, CallerDep, ServiceConfig, ServiceDep


def router(config: ServiceConfig) -> APIRouter:
    api = APIRouter()

    @api.get("/api/audit", summary="Who searched, enrolled or removed what, when (admin key)")
    def audit(
        svc: ServiceDep,
        who: CallerDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict:
        """Entries: time, actor (the key's label), action, target, request (hashes and sizes
        of images, never images) and answer. Page back with ``before`` = the last id seen."""
        if not who.admin:
            raise ApiError(403, "the audit log needs the admin key")
        return {"entries": [e.to_dict() for e in svc.watch.audit_log(limit, before)]}

    return api
