"""``lrface watch`` end to end on a generated clip, with the colour detector/embedder standing in
for MTCNN and the teacher: outputs, unknown stranger, truncated video keeps its events."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from lrface.calibration import ThresholdBook
from lrface.cli import app
from lrface.search.store import Enrolment, SqliteStore
from lrface.vectors import l2_normalize
from tests.video.clips import COLOURS, ColourDetector, colour_embed, crossing_frames, write_avi
from tests.video.test_sources import truncated_copy


@pytest.fixture
def watch_pipeline(monkeypatch) -> SimpleNamespace:
    """The colour detector/embedder as the pipeline ``lrface watch`` builds; ``calls`` holds
    the arguments it was built with."""
    fake = SimpleNamespace(
        detector=ColourDetector(),
        embed_faces=colour_embed,
        teacher=SimpleNamespace(cache_key="colour", name="colour"),
        student=None,
        dim=3,
        calls=[],
        thresholds=ThresholdBook,
    )
    monkeypatch.setattr(
        "lrface.cli.watch.build_pipeline", lambda *a, **k: fake.calls.append(a) or fake
    )
    return fake


@pytest.fixture
def colour_gallery(tmp_path, watch_pipeline):
    path = tmp_path / "g.db"
    with SqliteStore.create(path, "colour", 3) as store:
        for name, rgb in COLOURS.items():
            vector = l2_normalize(np.array([rgb], np.float32) - 90.0)[0]
            store.add(name, [Enrolment(vector, f"{name}.png")])
    return path


def _events(out):
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


def test_watch_writes_events_tracks_thumbnails_and_video(tmp_path, colour_gallery):
    clip = write_avi(crossing_frames(24, stranger=True), tmp_path / "c.avi")
    out = tmp_path / "out"
    args = ["watch", str(clip), "--gallery", str(colour_gallery), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--threshold", "0.9", "--annotate"])
    assert result.exit_code == 0, result.output
    events = _events(out)
    assert sorted(e["identity"] for e in events) == ["blue", "red", "unknown"]
    # motion gating is on by default; on this tiny frame most frames fall back to the whole
    whole = re.search(r"24 frames processed \((\d+) searched whole, the rest where", result.output)
    assert whole and 3 <= int(whole[1]) <= 24, result.output
    for e in events:
        assert {"track_id", "first_frame", "last_time", "score", "top", "frames_used"} <= set(e)
        assert (out / e["thumbnail"]).is_file()
    assert len((out / "tracks.csv").read_text().splitlines()) == 4
    # biometric data: owner-only, like the gallery (issue 26, item 6)
    written = [out / "events.jsonl", out / "tracks.csv", out / events[0]["thumbnail"]]
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o600"}
    assert (out / "thumbnails").stat().st_mode & 0o777 == 0o700
    # a VP8 WebM that browsers play (Chromium refuses mp4v; issue 26, item 11)
    video_path = out / "annotated.webm"
    assert video_path.stat().st_mode & 0o777 == 0o600
    assert video_path.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML (Matroska/WebM)
    video = cv2.VideoCapture(str(video_path))
    assert int(video.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"VP80"
    frames = []
    while (read := video.read())[0]:
        frames.append(read[1])
    assert len(frames) == 24 and frames[0].shape == (96, 160, 3)


def test_watch_full_every_1_searches_every_frame_whole(tmp_path, colour_gallery):
    clip = write_avi(crossing_frames(12), tmp_path / "c.avi")
    args = ["watch", str(clip), "--gallery", str(colour_gallery), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--threshold", "0.9", "--full-every", "1"])
    assert result.exit_code == 0, result.output
    assert "12 frames processed, " in result.output
    bad = CliRunner().invoke(app, [*args, "--full-every", "0"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_watch_enough_faces_embeds_fewer_faces_for_the_same_answers(tmp_path, colour_gallery):
    clip = write_avi(crossing_frames(24, stranger=True), tmp_path / "c.avi")
    answers = {}
    for n in (0, 4):
        out = tmp_path / f"o{n}"
        args = ["watch", str(clip), "--gallery", str(colour_gallery), "--out", str(out)]
        result = CliRunner().invoke(app, [*args, "--threshold", "0.9", "--enough-faces", str(n)])
        assert result.exit_code == 0, result.output
        answers[n] = {e["identity"]: e["frames_used"] for e in _events(out)}
    assert set(answers[4]) == set(answers[0]) == {"red", "blue", "unknown"}
    for identity, used in answers[4].items():  # video-coded boxes jitter: a few more than 4
        assert 4 <= used < answers[0][identity], (answers, identity)


def test_truncated_video_is_an_error_and_keeps_events(tmp_path, colour_gallery):
    clip = write_avi(crossing_frames(30), tmp_path / "c.avi")
    cut = truncated_copy(clip, 0.7)
    out = tmp_path / "out"
    args = ["watch", str(cut), "--gallery", str(colour_gallery), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--threshold", "0.9"])
    assert result.exit_code == 1
    assert f"error: {cut}: video ends early" in result.output
    assert "frames read" in result.output and "Traceback" not in result.output
    assert {e["identity"] for e in _events(out)} == {"red", "blue"}


def test_watch_unreadable_source_is_one_line(tmp_path, colour_gallery):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk" * 50)
    result = CliRunner().invoke(app, ["watch", str(bad), "--gallery", str(colour_gallery)])
    assert result.exit_code == 1
    assert f"error: {bad}: cannot be opened as a video" in result.output


def test_encoders_run_under_onnx_runtime_unless_told_torch(
    tmp_path, colour_gallery, watch_pipeline
):
    clip = write_avi(crossing_frames(8), tmp_path / "c.avi")
    out = str(tmp_path / "o")
    args = [
        "watch",
        str(clip),
        "--gallery",
        str(colour_gallery),
        "--out",
        out,
        "--threshold",
        "0.9",
    ]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CliRunner().invoke(app, [*args, "--runtime", "torch"]).exit_code == 0
    assert [call[-1] for call in watch_pipeline.calls] == ["onnx", "torch"]
    bad = CliRunner().invoke(app, [*args, "--runtime", "tensorrt"])
    assert bad.exit_code == 1 and "--runtime must be one of torch, onnx" in bad.output
    assert "Traceback" not in bad.output


def _calibration(path, kind, value):
    data = {"probes": kind, "probe_encoder": "colour", "gallery_encoder": "colour", "flip": False}
    data |= {"gallery_size": 40} if kind == "tracks" else {}
    path.write_text(json.dumps(data | {"openset": {"16": value}, "openset_fpir": 0.01}))
    return path


def test_watch_says_which_threshold_it_used_and_a_bad_file_is_named(tmp_path, colour_gallery):
    clip = write_avi(crossing_frames(12), tmp_path / "c.avi")
    out = tmp_path / "out"
    args = ["watch", str(clip), "--gallery", str(colour_gallery), "--out", str(out)]
    args += ["--student", "none", "--full-every", "1"]
    single = _calibration(tmp_path / "single.json", "faces", 0.97)
    tracks = _calibration(tmp_path / "tracks.json", "tracks", 0.93)
    for files, kind, value in [([single], "single-face", 0.97), ([single, tracks], "track", 0.93)]:
        given = [arg for path in files for arg in ("--calibration", str(path))]
        result = CliRunner().invoke(app, [*args, *given])
        assert result.exit_code == 0, result.output
        used = str(files[-1] if kind == "track" else single)
        assert f"threshold: colour: {kind} open-set thresholds from {used}" in result.output
        assert "this gallery holds 3 identities" in result.output
        assert ("set for a gallery of 40" in result.output) == (kind == "track")
        assert {e["threshold"] for e in _events(out)} == {value}
        assert "long-track" not in result.output
    # a track file with long-track thresholds says so
    data = json.loads(tracks.read_text()) | {"long_track_faces": 16, "openset_long": {"16": 0.95}}
    tracks.write_text(json.dumps(data))
    result = CliRunner().invoke(app, [*args, "--calibration", str(tracks)])
    assert "and for tracks of 16+ faces its long-track ones" in result.output, result.output
    result = CliRunner().invoke(app, [*args, "--threshold", "0.5"])
    assert "threshold: --threshold 0.5" in result.output and {
        e["threshold"] for e in _events(out)
    } == {0.5}
    missing, broken = tmp_path / "missing.json", tmp_path / "broken.json"
    broken.write_text("{")
    for bad, why in [(missing, "cannot read calibration file"), (broken, "not valid JSON")]:
        result = CliRunner().invoke(app, [*args, "--calibration", str(bad)])
        assert result.exit_code == 1 and f"error: {bad}: " in result.output, result.output
        assert why in result.output and "Traceback" not in result.output


def test_watch_picks_the_track_threshold_for_its_gallery_size(tmp_path, colour_gallery):
    clip = write_avi(crossing_frames(12), tmp_path / "c.avi")
    out = tmp_path / "out"
    args = ["watch", str(clip), "--gallery", str(colour_gallery), "--out", str(out)]
    args += ["--student", "none", "--full-every", "1"]
    path = tmp_path / "tracks.json"
    for ladder, value, said in [
        ({1: 0.90, 10: 0.95}, 0.9239, "for a gallery of 3, interpolated between 1 and 10"),
        ({1: 0.90, 2: 0.93}, 0.93, "for a gallery of 3, above the largest calibrated size (2)"),
    ]:
        _calibration(path, "tracks", max(ladder.values()))
        data = json.loads(path.read_text())
        data["gallery_size"] = max(ladder)
        data["openset_by_gallery_size"] = {str(n): {"16": t} for n, t in ladder.items()}
        path.write_text(json.dumps(data))
        result = CliRunner().invoke(app, [*args, "--calibration", str(path)])
        assert result.exit_code == 0, result.output
        assert f"(calibrated on a gallery of {max(ladder)}; {said}" in result.output
        assert {e["threshold"] for e in _events(out)} == {value}
