"""FaceWatcher on generated clips: crossing people keep their identities, a stranger is
unknown, aggregation weights behave."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.video.aggregate import aggregate, face_weights
from lrface.video.decide import fixed_threshold
from lrface.video.sources import Frame, open_source
from lrface.video.watcher import FaceWatcher, WatchConfig
from tests.video.clips import (
    ColourDetector,
    colour_embed,
    colour_searcher,
    crossing_frames,
    write_avi,
)


def _watcher(threshold: float | None = 0.9) -> FaceWatcher:
    return FaceWatcher(ColourDetector(), colour_embed, colour_searcher, fixed_threshold(threshold))


def test_crossing_people_keep_their_identities(tmp_path):
    clip = write_avi(crossing_frames(), tmp_path / "cross.avi")
    events = list(_watcher().watch(open_source(clip)))
    assert [e.decision.identity for e in events] == ["red", "blue"]
    detector = ColourDetector()
    for event in events:
        # every face of the track is the same colour as the decision
        truth = {colour_embed_name(o) for o in event.observations}
        assert truth == {event.decision.identity}
        assert len(event.observations) >= 20
        assert event.to_dict()["top"][0]["name"] == event.decision.identity
    assert detector.name == "colour"


def test_each_track_is_judged_by_the_threshold_for_its_length():
    asked = []

    def threshold(encoder, size, faces):
        asked.append(faces)
        return 0.9

    frames = [Frame(i, i / 10, f) for i, f in enumerate(crossing_frames())]
    watcher = FaceWatcher(ColourDetector(), colour_embed, colour_searcher, threshold)
    events = list(watcher.watch(frames))
    assert sorted(asked) == sorted(len(e.observations) for e in events)


def colour_embed_name(observation) -> str:
    return colour_searcher(observation.embedding[None], 1)[0][0][0]


def test_stranger_is_unknown_and_enrolled_are_not():
    frames = [Frame(i, i / 10, f) for i, f in enumerate(crossing_frames(stranger=True))]
    events = list(_watcher(0.9).watch(frames))
    decisions = sorted(str(e.decision.identity) for e in events)
    assert decisions == ["None", "blue", "red"]
    unknown = next(e for e in events if e.decision.unknown)
    assert unknown.to_dict()["identity"] == "unknown"
    assert unknown.decision.score < 0.9
    # without a threshold the same track is forced onto its nearest identity
    forced = list(_watcher(None).watch(frames))
    assert all(not e.decision.unknown for e in forced)


def test_tracks_end_when_the_person_leaves():
    frames = crossing_frames(12)
    blank = np.full_like(frames[0], 90)
    clip = [Frame(i, i / 10, f) for i, f in enumerate([*frames, *[blank] * 12])]
    watcher = _watcher()
    ended_at = {}
    for frame in clip:
        for event in watcher.process(frame):
            ended_at[event.decision.identity] = frame.index
    assert set(ended_at) == {"red", "blue"}  # ended while frames were still coming
    assert watcher.flush() == []


def test_weights_and_aggregate():
    widths, scores = np.array([10.0, 30.0]), np.array([0.5, 1.0])
    assert face_weights(widths, scores, "uniform").tolist() == [1, 1]
    assert face_weights(widths, scores, "size-score").tolist() == [5, 30]
    with pytest.raises(ValueError, match="unknown weighting"):
        face_weights(widths, scores, "area")
    e = np.array([[1, 0], [0, 1]], np.float32)
    pooled = aggregate(e, np.array([1.0, 3.0]))
    assert np.isclose(np.linalg.norm(pooled), 1) and pooled[1] > pooled[0]
    assert np.allclose(aggregate(e, np.zeros(2)), np.full(2, 2**-0.5))


def test_watcher_takes_the_track_threshold_and_falls_back_to_single_faces(tmp_path):
    import json

    from lrface.calibration import Calibration, ThresholdBook
    from lrface.video.decide import BookThresholds

    def calib(name, kind, encoder, value):
        data = {"probes": kind, "probe_encoder": encoder, "gallery_encoder": "colour"}
        path = tmp_path / name
        path.write_text(json.dumps(data | {"openset": {"16": value}, "openset_fpir": 0.01}))
        return Calibration.load(path)

    single = calib("single.json", "faces", "colour", 0.97)
    frames = [Frame(i, i / 10, f) for i, f in enumerate(crossing_frames(stranger=True))]
    for files, expected in [
        ([calib("tracks.json", "tracks", "colour", 0.93), single], 0.93),
        ([calib("other.json", "tracks", "another-encoder", 0.5), single], 0.97),
    ]:
        thresholds = BookThresholds(ThresholdBook(files), "colour", tracks=True)
        watcher = FaceWatcher(ColourDetector(), colour_embed, colour_searcher, thresholds)
        events = list(watcher.watch(frames))
        assert len(events) == 3 and {e.to_dict()["threshold"] for e in events} == {expected}
        assert thresholds.choice("colour", 16).tracks == (expected == 0.93)
    # long tracks (every track here pools 20 faces or more) also face the long-track threshold
    path = tmp_path / "long.json"
    data = json.loads((tmp_path / "tracks.json").read_text())
    path.write_text(json.dumps(data | {"long_track_faces": 16, "openset_long": {"16": 0.995}}))
    thresholds = BookThresholds(ThresholdBook([Calibration.load(path)]), "colour", tracks=True)
    watcher = FaceWatcher(ColourDetector(), colour_embed, colour_searcher, thresholds)
    events = list(watcher.watch(frames))
    assert {e.to_dict()["threshold"] for e in events} == {0.995}
    assert all(len(e.observations) >= 16 for e in events)


def test_each_track_is_searched_as_a_probe_of_its_encoder_and_judged_on_that_scoring(tmp_path):
    import json

    from lrface.calibration import Calibration, ThresholdBook
    from lrface.video.decide import BookThresholds

    probes_seen = []

    def searcher(embeddings, k, probes=None):
        probes_seen.extend(probes or [])
        return [
            [(name, score * 10) for name, score in row] for row in colour_searcher(embeddings, k)
        ]

    def calib(name, scoring, value):
        data = {"probes": "tracks", "probe_encoder": "colour", "gallery_encoder": "colour",
                "openset": {"16": value}, "openset_fpir": 0.01, "scoring": scoring}  # fmt: skip
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return Calibration.load(path)

    book = ThresholdBook([calib("raw.json", "raw", 0.93), calib("asnorm.json", "asnorm", 9.3)])
    thresholds = BookThresholds(book, "colour", tracks=True, scoring_for=lambda e: "asnorm")
    frames = [Frame(i, i / 10, f) for i, f in enumerate(crossing_frames(stranger=True))]
    events = list(FaceWatcher(ColourDetector(), colour_embed, searcher, thresholds).watch(frames))
    assert len(events) == 3 and {e.to_dict()["threshold"] for e in events} == {9.3}
    assert probes_seen and {p.encoder for p in probes_seen} == {"colour"}
    assert all(p.resolution is None or p.resolution > 0 for p in probes_seen)
    assert BookThresholds(book, "colour", tracks=True).choice("colour", 16).threshold == 0.93


def _summary(events) -> list:
    return [(e.track_id, e.decision.identity, [o.frame for o in e.observations]) for e in events]


def test_pipelined_watch_gives_the_sequential_events():
    frames = [Frame(i, i / 10, f) for i, f in enumerate(crossing_frames(stranger=True))]
    runs = []
    for pipelined in (False, True):
        config = WatchConfig(pipelined=pipelined)
        watcher = FaceWatcher(
            ColourDetector(), colour_embed, colour_searcher, fixed_threshold(0.9), config
        )
        seen: list[tuple[int, int]] = []

        def after(frame, watcher=watcher, seen=seen) -> None:
            seen.append((frame.index, len(watcher.current)))

        events = _summary(watcher.watch(frames, after))
        gate = watcher.gate
        runs.append((events, seen, (gate.full_frames, gate.crowded_frames, gate.skipped_frames)))
    assert runs[0] == runs[1]
    assert [i for i, _ in runs[1][1]] == list(range(len(frames)))
    # the gate observes each frame once, in the whole-frame thread when pipelined: every
    # 10th frame (the default full_every) searched whole, from the first
    assert runs[1][2][0] == -(-len(frames) // 10) > 1


def test_a_read_error_reaches_the_caller_after_the_frames_before_it():
    def broken():
        for i, image in enumerate(crossing_frames(10)):
            yield Frame(i, i / 10, image)
        raise ValueError("video ends early")

    watcher = FaceWatcher(ColourDetector(), colour_embed, colour_searcher, fixed_threshold(0.9))
    recorded = []
    with pytest.raises(ValueError, match="ends early"):
        list(watcher.watch(broken(), lambda f: recorded.append(f.index)))
    assert recorded == list(range(10)) and watcher.frames_processed == 10
    assert len(watcher.flush()) == 2  # the open tracks are the caller's to flush


def test_stopping_early_stops_the_pipeline_threads():
    import threading

    before = threading.active_count()
    frames = crossing_frames(12)
    blank = np.full_like(frames[0], 90)
    clip = (Frame(i, i / 10, f) for i, f in enumerate([*frames, *[blank] * 200]))
    watcher = FaceWatcher(ColourDetector(), colour_embed, colour_searcher, fixed_threshold(0.9))
    events = watcher.watch(clip)
    next(events)  # the first track ends soon after the people leave
    events.close()
    for _ in range(100):
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() <= before
    assert watcher.frames_processed < 100


def test_enough_faces_stops_embedding_a_steady_track_with_the_same_decisions():
    frames = [Frame(i, i / 10, f) for i, f in enumerate(crossing_frames(stranger=True))]
    every = FaceWatcher(
        ColourDetector(), colour_embed, colour_searcher, fixed_threshold(0.9),
        WatchConfig(enough_faces=0),
    )  # fmt: skip
    expected = [(e.decision.identity, len(e.observations)) for e in every.watch(frames)]
    watcher = FaceWatcher(
        ColourDetector(), colour_embed, colour_searcher, fixed_threshold(0.9),
        WatchConfig(enough_faces=4),
    )  # fmt: skip
    events = list(watcher.watch(frames))
    # the squares keep their size: once 4 faces are pooled no later face is heavier by 10%
    assert [e.decision.identity for e in events] == [identity for identity, _ in expected]
    assert [len(e.observations) for e in events] == [4, 4, 4]
    assert min(n for _, n in expected) > 4
    assert watcher.faces_embedded == 12 < every.faces_embedded == sum(n for _, n in expected)
    assert all(e.crop is not None and e.crop.size for e in events)


def test_enough_faces_keeps_embedding_a_face_that_grows():
    """A person walking towards the camera: the face grows from 12 to 42 px; every face more
    than ``enough_gain`` over the 4th heaviest pooled is embedded, to the largest."""
    frames = []
    for t in range(31):
        image = np.full((96, 160, 3), 90, np.uint8)
        side = 12 + t
        image[20 : 20 + side, 40 + t : 40 + t + side] = (220, 30, 30)
        frames.append(Frame(t, t / 10, image))
    watcher = FaceWatcher(
        ColourDetector(), colour_embed, colour_searcher, fixed_threshold(0.9),
        WatchConfig(enough_faces=4, enough_gain=1.2),
    )  # fmt: skip
    (event,) = list(watcher.watch(frames))
    widths = [o.face.width for o in event.observations]
    assert event.decision.identity == "red" and watcher.faces_seen == 31
    assert widths == sorted(widths) and widths[-1] >= 40  # the late, large faces are in
    assert 6 < len(widths) < 31  # thinned out, not stopped
    later = widths[4:]
    assert all(b > 1.2 * a for a, b in zip(widths[: len(later)], later, strict=True))
