"""FaceTracker's gates on fast small faces: a face moving three of its widths per frame stays
one track, and two such faces passing each other keep their identities."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.detect import Face
from lrface.video.decide import fixed_threshold
from lrface.video.motion import GateConfig
from lrface.video.sources import Frame
from lrface.video.tracking import FaceTracker, TrackerConfig
from lrface.video.watcher import FaceWatcher, WatchConfig
from tests.video.clips import ColourDetector, colour_embed, colour_searcher, fast_frames


def _tracks(tracker: TrackerConfig | None = None) -> list[list[str]]:
    """Per track, in order, the colour of each of its faces (every frame searched whole: this
    is about the tracker, not motion gating)."""
    config = WatchConfig(
        min_faces=1, tracker=tracker or TrackerConfig(), gate=GateConfig(full_every=1)
    )
    watcher = FaceWatcher(
        ColourDetector(), colour_embed, colour_searcher, fixed_threshold(None), config
    )
    frames = [Frame(i, i / 10, image) for i, image in enumerate(fast_frames())]
    return [[_colour(o.embedding) for o in e.observations] for e in watcher.watch(frames)]


def _colour(embedding) -> str:
    return colour_searcher(embedding[None], 1)[0][0][0]


def test_fast_faces_stay_one_track_each_and_keep_their_identities():
    n = len(fast_frames())
    tracks = _tracks()
    assert sorted(tracks) == [["blue"] * n, ["red"] * n]


@pytest.mark.parametrize(
    "tracker",
    [TrackerConfig(first_distance=1.5), TrackerConfig(velocity_std=1.0)],
    ids=["no-wide-first-gate", "norfair-velocity-prior"],
)
def test_each_half_of_the_gate_is_needed(tracker):
    # without the wide gate for a track's second face, or with norfair's default velocity
    # prior (the prediction lags by more than a face width), the fast faces fragment (and
    # where they pass each other, fragments of the two can join)
    assert len(_tracks(tracker)) > 2


def test_gates_are_checked():
    with pytest.raises(ValueError, match="max_distance <= first_distance"):
        TrackerConfig(max_distance=2.0, first_distance=1.0)


def _face(cx: float, cy: float, side: float) -> Face:
    box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)
    return Face(box, 0.99, np.tile(np.array([[cx, cy]], np.float32), (5, 1)))


def test_a_large_box_beside_a_small_face_is_not_its_track():
    # widths are compared to the smaller face: a 100 px box centred 10 px from a 12 px face's
    # track is 7 of the small face's widths away, not 0.98 of the large box's
    tracker = FaceTracker()
    first = tracker.update([_face(100, 100, 12)], 0)[0]
    assert tracker.update([_face(101, 100, 12)], 1)[0] == first
    joined, _ = tracker.update([_face(110, 100, 100)], 2)
    assert len(joined) == 1 and joined[0][0] != first[0][0]  # a track of its own


def test_young_tracks_are_those_seen_once():
    tracker = FaceTracker()
    box = np.array([10, 10, 30, 30], np.float32)
    tracker.update([Face(box, 0.99, np.zeros((5, 2), np.float32))], 0)
    assert len(tracker.predicted_boxes(young_only=True)) == 1
    tracker.update([Face(box + 2, 0.99, np.zeros((5, 2), np.float32))], 1)
    assert len(tracker.predicted_boxes()) == 1
    assert tracker.predicted_boxes(young_only=True) == []
