"""The key guard: an ASGI middleware in front of everything else, so that a request without a
valid key is answered 401 from its headers alone, before a byte of its body is read (FastAPI
parses a form body before it runs a route's dependencies, so a dependency is too late: an
unauthenticated 250 MiB upload was spooled to disk before being refused). The size of an
authenticated body is then bounded per route (``max_body_size``: the declared
``Content-Length`` is refused before reading, a chunked body as soon as it passes the limit)."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from lrface.service.security import API_KEY_HEADER, Keys

PUBLIC_PATHS = frozenset({"/", "/api/health"})
"""Paths answered without a key (health then says only that the server is up)."""


class KeyGuard:
    """Refuses (401) any ``/api`` request but the public ones whose ``X-API-Key`` matches no
    key; sets ``request.state.caller`` (None on a public path without a valid key)."""

    def __init__(self, app: ASGIApp, keys: Keys):
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        caller = self.keys.caller(Headers(scope=scope).get(API_KEY_HEADER))
        scope.setdefault("state", {})["caller"] = caller
        if caller is None and scope["path"] not in PUBLIC_PATHS:
            message = f"missing or wrong API key (send it in the {API_KEY_HEADER} header)"
            body = json.dumps({"error": message}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the unread body is not ours to drain
            ]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
