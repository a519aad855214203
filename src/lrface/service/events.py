"""The shared event log over HTTP: what every camera's watch worker saw (``lrface watch
--camera``, one row per finished track in the gallery's store), listed, filtered and pushed.

- ``GET /api/events``: the newest events (``limit``), filtered by ``camera``, ``identity``
  (``unknown`` for the unknown ones) and a time window (``since``/``until``, epoch seconds or
  ISO 8601); with ``after_id``, the ones logged after that id, oldest first.
- ``GET /api/events/{id}/thumbnail``: the JPEG of the track's best face.
- ``GET /api/events/stream``: server-sent events (``text/event-stream``), one ``track``
  message per event logged from now on (by any worker, on any machine, since they share the
  store), same filters; ``Last-Event-ID`` (or ``after_id``) resumes after a reconnect, and
  ``seconds`` closes the stream after that long (at most, and by default, an hour:
  ``STREAM_MAX_S``). The store is read every ``poll`` seconds, so
  a new event reaches the page within that (half a second by default).

Every route wants the API key like the rest of ``/api``; the web page reads the
stream with ``fetch``, since ``EventSource`` cannot send the key's header.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from lrface.search.store import EventQuery, GalleryStore

STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 15.0
STREAM_MAX_S = 3600.0
"""The longest a stream stays open (every request is bounded in time); the browser's
``EventSource`` and ``events.js`` reconnect and resume from the last id they saw."""


Camera = Annotated[str | None, Query(description="Only this camera's events.")]
Identity = Annotated[
    str | None, Query(description="Only this identity's events; 'unknown' for strangers.")
]
Since = Annotated[str | None, Query(description="From this time: epoch s or ISO 8601.")]
Until = Annotated[str | None, Query(description="Up to this time: epoch s or ISO 8601.")]


def jpeg_response(
    fetch: Callable[[], bytes | None], missing: Exception, empty: Exception
) -> Response:
    """The JPEG ``fetch`` returns, uncached; ``missing`` raised when it raises KeyError (no
    such record), ``empty`` when it returns None (a record without an image)."""
    try:
        data = fetch()
    except KeyError:
        raise missing from None
    if data is None:
        raise empty
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


class EventQueryError(ValueError):
    """A filter the log cannot use (the message says which and why)."""


def epoch(value: str | None, name: str) -> float | None:
    """Epoch seconds from a number or an ISO 8601 time (UTC when it names no zone)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise EventQueryError(
            f"{name} must be epoch seconds or an ISO 8601 time, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.now().astimezone().tzinfo)
    return moment.timestamp()


def events_router(
    store: GalleryStore,
    dependencies: list,
    error: type[Exception],
    poll: float = 0.5,
) -> APIRouter:
    """The event routes on ``store``; ``dependencies`` guard them (the API key) and
    ``error(status, message)`` is the app's JSON error."""
    router = APIRouter(tags=["events"])

    def query(camera, identity, since, until, after_id, limit) -> EventQuery:
        try:
            return EventQuery(
                camera or None,
                identity or None,
                epoch(since, "since"),
                epoch(until, "until"),
                after_id,
                limit,
            )
        except EventQueryError as exc:
            raise error(422, str(exc)) from None

    @router.get("/events.js", include_in_schema=False)
    def page_script() -> FileResponse:
        """The web page's live alert panel."""
        return FileResponse(STATIC / "events.js", media_type="text/javascript")

    @router.get(
        "/api/events",
        dependencies=dependencies,
        summary="Events of the shared log, newest first, filtered",
    )
    def list_events(
        camera: Camera = None,
        identity: Identity = None,
        since: Since = None,
        until: Until = None,
        after_id: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict:
        found = store.events(query(camera, identity, since, until, after_id, limit))
        return {"events": [event.to_dict() for event in found]}

    @router.get(
        "/api/events/{event_id}/thumbnail",
        dependencies=dependencies,
        summary="JPEG of the track's best face",
        response_class=Response,
    )
    def event_thumbnail(event_id: int) -> Response:
        return jpeg_response(
            lambda: store.event_thumbnail(event_id),
            error(404, f"no event {event_id}"),
            error(404, f"event {event_id} has no thumbnail"),
        )

    @router.get(
        "/api/events/stream",
        dependencies=dependencies,
        summary="New events as server-sent events",
    )
    async def stream(
        request: Request,
        camera: Camera = None,
        identity: Identity = None,
        after_id: Annotated[int | None, Query(ge=0)] = None,
        seconds: Annotated[float, Query(gt=0, le=STREAM_MAX_S)] = STREAM_MAX_S,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        if last_event_id and last_event_id.isdigit():
            after_id = int(last_event_id)
        if after_id is None:  # from now on
            newest = await asyncio.to_thread(store.events, EventQuery(limit=1))
            after_id = newest[0].id if newest else 0
        wanted = query(camera, identity, None, None, after_id, 100)

        async def messages():
            stop = time.monotonic() + seconds
            beat = time.monotonic() + HEARTBEAT_S
            yield "retry: 2000\n\n"
            while time.monotonic() < stop:
                if await request.is_disconnected():
                    return
                for event in await asyncio.to_thread(store.events, wanted):
                    wanted.after_id = event.id
                    yield f"id: {event.id}\nevent: track\ndata: {json.dumps(event.to_dict())}\n\n"
                if time.monotonic() > beat:
                    beat = time.monotonic() + HEARTBEAT_S
                    yield ": still here\n\n"
                await asyncio.sleep(poll)

        return StreamingResponse(
            messages(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router
