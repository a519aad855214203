"""The event log's routes (``lrface.service.events``): list and filter by camera, identity and
time, thumbnails, the key, and the server-sent stream of new events with resumption."""

from __future__ import annotations

import json
import threading
import time

import pytest

from lrface.search.store import EventRecord
from lrface.service.events import STREAM_MAX_S, epoch
from tests.service import test_app
from tests.service.test_app import KEY, client_for

pipeline, store = test_app.pipeline, test_app.store  # the service tests' fixtures


def _event(camera: str, track: int, identity: str | None, at: float, thumb: bytes | None = b"J"):
    return EventRecord(camera, "run-1", track, at, identity, 0.7, 0.5, {"track_id": track}, thumb)


def test_list_filter_and_thumbnail(store, pipeline):
    store.add_event(_event("door", 1, "ann", 1000.0))
    store.add_event(_event("door", 2, None, 2000.0, None))
    store.add_event(_event("yard", 1, "bob", 3000.0))
    client = client_for(store, pipeline)
    names = lambda r: [(e["camera"], e["identity"]) for e in r.json()["events"]]  # noqa: E731
    assert names(client.get("/api/events")) == [("yard", "bob"), ("door", None), ("door", "ann")]
    assert names(client.get("/api/events", params={"camera": "door", "identity": "unknown"})) == [
        ("door", None)
    ]
    window = {"since": "1500", "until": "1970-01-01T00:50:00+00:00"}  # 1500 s to 3000 s
    assert names(client.get("/api/events", params=window)) == [("yard", "bob"), ("door", None)]
    assert names(client.get("/api/events", params={"after_id": 1, "limit": 1})) == [("door", None)]
    first = client.get("/api/events", params={"identity": "ann"}).json()["events"][0]
    assert first["thumbnail"] and first["threshold"] == 0.5 and first["details"] == {"track_id": 1}
    answer = client.get(f"/api/events/{first['id']}/thumbnail")
    assert answer.status_code == 200 and answer.content == b"J"
    assert "no thumbnail" in client.get("/api/events/2/thumbnail").json()["error"]
    assert client.get("/api/events/99/thumbnail").json() == {"error": "no event 99"}
    bad = client.get("/api/events", params={"since": "yesterday"})
    assert bad.status_code == 422 and "since must be epoch seconds or an ISO 8601" in bad.text
    assert client.get("/api/events", headers={"X-API-Key": "wrong" * 5}).status_code == 401
    assert client.get("/events.js").status_code == 200  # the page's script needs no key


def test_epoch_reads_numbers_and_iso_times():
    assert epoch("12.5", "since") == 12.5 and epoch(None, "since") is None
    assert epoch("1970-01-01T00:01:00Z", "since") == 60.0


def _messages(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("resume", ["header", "none"])
def test_stream_pushes_events_logged_after_it_opened(store, pipeline, resume):
    store.add_event(_event("door", 1, "ann", 1000.0))  # before: not pushed unless resumed
    client = client_for(store, pipeline)

    def later() -> None:
        time.sleep(0.3)
        store.add_event(_event("yard", 2, "bob", 2000.0))
        store.add_event(_event("door", 3, None, 2001.0))

    writer = threading.Thread(target=later)
    writer.start()
    headers = {"X-API-Key": KEY, "Last-Event-ID": "0"} if resume == "header" else None
    answer = client.get("/api/events/stream", params={"seconds": 1.5}, headers=headers)
    writer.join()
    assert answer.headers["content-type"].startswith("text/event-stream")
    pushed = [(e["camera"], e["identity"]) for e in _messages(answer.text)]
    expected = [("yard", "bob"), ("door", None)]
    assert pushed == ([("door", "ann")] + expected if resume == "header" else expected)
    assert "id: 3\nevent: track\n" in answer.text
    only_door = client.get(
        "/api/events/stream", params={"seconds": 0.3, "after_id": 0, "camera": "door"}
    )
    assert [e["track_id"] for e in _messages(only_door.text)] == [1, 3]
    endless = client.get("/api/events/stream", params={"seconds": STREAM_MAX_S + 1})
    assert endless.status_code == 422  # no stream outlives the bound (the page reconnects)
