"""``lrface watch --camera``: each finished track goes into the gallery's event log as well as
to the files, and a second run over the same input logs nothing twice."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lrface.cli import app
from lrface.search.store import EventQuery, open_store
from tests.cli import test_watch
from tests.video.clips import crossing_frames, write_avi

colour_gallery, watch_pipeline = test_watch.colour_gallery, test_watch.watch_pipeline


def test_watch_with_a_camera_logs_each_track_once(tmp_path, colour_gallery):
    clip = write_avi(crossing_frames(24, stranger=True), tmp_path / "c.avi")
    args = ["watch", str(clip), "--gallery", str(colour_gallery), "--threshold", "0.9"]
    first = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--camera", "door"])
    assert first.exit_code == 0, first.output
    assert "and to the event log as camera door" in first.output
    files = [
        json.loads(line) for line in (tmp_path / "a" / "events.jsonl").read_text().splitlines()
    ]
    with open_store(colour_gallery) as store:
        logged = store.events(EventQuery(camera="door"))[::-1]
        assert [e.track_id for e in logged] == [f["track_id"] for f in files] and len(files) == 3
        assert [e.identity or "unknown" for e in logged] == [f["identity"] for f in files]
        assert [e.threshold for e in logged] == [0.9] * 3
        assert store.event_thumbnail(logged[0].id)[:2] == b"\xff\xd8"  # a JPEG
    again = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--camera", "door"])
    assert "(3 were logged by an earlier run of this input)" in again.output
    plain = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c")])
    assert plain.exit_code == 0 and "event log" not in plain.output
    with open_store(colour_gallery) as store:
        assert len(store.events(EventQuery())) == 3
