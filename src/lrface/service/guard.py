"""The request guard: an ASGI middleware in front of everything else, so that a request without
a valid key is answered 401 from its headers alone, before a byte of its body is read (FastAPI
parses a form body before it runs a route's dependencies, so a dependency is too late: an
unauthenticated 250 MiB upload was spooled to disk before being refused), and a body larger
than its endpoint takes is refused 413 from its declared ``Content-Length`` before reading,
or, sent chunked, as soon as the bytes received pass the limit (the parser stops there, so at
most the limit is ever spooled)."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lrface.service.security import API_KEY_HEADER, Keys

PUBLIC_PATHS = frozenset({"/", "/events.js", "/api/health"})
"""Paths answered without a key: the web page and its script (no data in either), and health
(which then says only that the server is up)."""


BodyLimit = Callable[[str, str], int]
"""(method, path) -> the most body bytes that endpoint takes."""


class BodyTooLarge(HTTPException):
    """A chunked body that passed its endpoint's limit (FastAPI lets an HTTPException raised
    while it parses the body through, to the app's handler)."""

    def __init__(self, limit: int):
        super().__init__(
            413,
            f"request too large (this endpoint takes at most {limit} bytes)",
            headers={"connection": "close"},  # the rest of the body is not read
        )


class RequestGuard:
    """Refuses (401) any request but the public ones whose ``X-API-Key`` matches no key, and
    (413) any body over ``limit(method, path)``; sets ``request.state.caller`` (None on a
    public path without a valid key)."""

    def __init__(self, app: ASGIApp, keys: Keys, limit: BodyLimit):
        self.app = app
        self.keys = keys
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        caller = self.keys.caller(headers.get(API_KEY_HEADER))
        scope.setdefault("state", {})["caller"] = caller
        if caller is None and scope["path"] not in PUBLIC_PATHS:
            message = f"missing or wrong API key (send it in the {API_KEY_HEADER} header)"
            await _refuse(send, 401, message)
            return
        limit = self.limit(scope["method"], scope["path"])
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(
                send, 413, f"request too large (this endpoint takes at most {limit} bytes)"
            )
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        await self.app(scope, bounded_receive, send)


async def _refuse(send: Send, status: int, message: str) -> None:
    """Answer ``status`` with ``{"error": message}`` and close: the unread body is not ours
    to drain."""
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
