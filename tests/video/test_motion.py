"""Motion-gated detection on generated clips: it finds what full-frame detection finds while
looking at crops only, a face that stops moving is found again at the next full-frame pass,
and a tracked face that stops is not lost in between."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.detect.mtcnn import MTCNN
from lrface.video.decide import fixed_threshold
from lrface.video.motion import (
    GateConfig,
    MotionGate,
    covered_share,
    detect_planned,
    detect_regions,
    detect_tracks,
    merge_regions,
)
from lrface.video.sources import Frame
from lrface.video.watcher import FaceWatcher, WatchConfig
from tests.video.clips import COLOURS, ColourDetector, colour_embed, colour_searcher

H, W, SIDE = 240, 320, 20


def scene(positions: dict[str, tuple[int, int]], seed: int) -> np.ndarray:
    """Squares at ``positions`` (x, y) on a static textured background with mild noise."""
    yy, xx = np.mgrid[:H, :W]
    background = 160 + 20 * np.sin(xx / 17.0) * np.cos(yy / 23.0)  # brighter than the squares
    image = np.repeat(background[..., None], 3, axis=2)
    for name, (x, y) in positions.items():
        image[y : y + SIDE, x : x + SIDE] = COLOURS[name]
    image += np.random.default_rng(seed).normal(0, 2, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


class RecordingDetector(ColourDetector):
    """The colour detector, remembering the shape of every image it was shown."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, image):
        self.shapes.append(image.shape)
        return super().detect(image)


def _boxes(faces) -> list[list[float]]:
    return sorted(np.round(f.box, 3).tolist() for f in faces)


def test_merge_regions_joins_overlapping_and_touching_rectangles():
    assert merge_regions([(0, 0, 10, 10), (5, 5, 20, 20), (30, 30, 40, 40)]) == [
        (0, 0, 20, 20),
        (30, 30, 40, 40),
    ]
    assert merge_regions([(0, 0, 10, 10), (10, 0, 20, 10)]) == [(0, 0, 20, 10)]
    # a chain: the third joins only through the union of the first two
    assert merge_regions([(0, 0, 10, 10), (50, 0, 60, 10), (8, 0, 52, 4)]) == [(0, 0, 60, 10)]
    assert merge_regions([]) == []


def test_gated_detection_finds_what_full_frame_detection_finds_from_crops():
    frames = [
        scene({"red": (20 + 4 * t, 40), "blue": (260 - 3 * t, 160 + t)}, seed=t) for t in range(24)
    ]
    detector = RecordingDetector()
    config = WatchConfig(gate=GateConfig(full_every=10))
    watcher = FaceWatcher(detector, colour_embed, colour_searcher, fixed_threshold(0.9), config)
    for t, image in enumerate(frames):
        calls = len(detector.shapes)
        watcher.process(Frame(t, t / 10, image))
        gated = [face for _, face in watcher.current]
        assert _boxes(gated) == _boxes(ColourDetector().detect(image)), f"frame {t}"
        assert len(gated) == 2
        shown = detector.shapes[calls:]
        if t % 10:  # between full-frame passes the detector sees crops and track canvases
            assert (H, W, 3) not in shown
            assert sum(h * w for h, w, _ in shown) < 0.6 * H * W
        else:
            assert shown == [(H, W, 3)]
    assert watcher.gate.full_frames == 3
    assert sorted(e.decision.identity for e in watcher.flush()) == ["blue", "red"]


def test_a_face_that_stops_moving_is_found_at_the_next_full_frame_pass():
    # red walks for 8 frames, then stands still; the background model absorbs it quickly
    gate = MotionGate(12, GateConfig(full_every=15, history=5))
    found = []
    for t in range(32):
        image = scene({"red": (40 + 5 * min(t, 8), 100)}, seed=t)
        plan = gate.plan(image, [])
        found.append(len(detect_planned(ColourDetector(), image, plan, gate.config)))
    assert all(found[:9])  # moving (or the first, full frame)
    assert 0 in found[9:15]  # standing still with no track to look at: missed ...
    assert found[15] == 1 and found[30] == 1  # ... until the next full-frame passes


def test_a_tracked_face_that_stops_moving_is_kept_by_its_track_region():
    frames = [scene({"red": (40 + 5 * min(t, 8), 100)}, seed=t) for t in range(32)]
    config = WatchConfig(gate=GateConfig(full_every=100, history=5))
    watcher = FaceWatcher(
        ColourDetector(), colour_embed, colour_searcher, fixed_threshold(0.9), config
    )
    seen = []
    for t, image in enumerate(frames):
        watcher.process(Frame(t, t / 10, image))
        seen.append([track for track, _ in watcher.current])
    assert seen == [[1]] * 32  # one track, found in every frame
    assert watcher.gate.full_frames == 1
    (event,) = watcher.flush()
    assert event.decision.identity == "red"


def test_a_crowd_is_searched_around_its_tracks_and_whole_every_few_frames(monkeypatch):
    config = GateConfig(full_every=50, max_area=0.5, crowd_full_every=3, crowd_track_every=1)
    gate = MotionGate(12, config)
    assert gate.plan(scene({}, seed=0), []).whole  # first frame
    everything = np.full((H // gate.step, W // gate.step), 255, np.uint8)
    monkeypatch.setattr(gate, "motion_mask", lambda image: everything)  # everyone moves
    tracks = [np.array([100, 100, 120, 120])]
    plans = [gate.plan(scene({}, seed=t), tracks) for t in range(1, 7)]
    assert [p.whole for p in plans] == [False, False, True, False, False, True]
    for plan in plans:
        assert plan.regions == [] and len(plan.tracks) == (0 if plan.whole else 1)
    assert gate.crowded_frames == 6 and gate.full_frames == 3
    # crowd_track_every 2: every other frame between full passes is not searched at all
    skipping = MotionGate(12, GateConfig(full_every=50, crowd_full_every=5, crowd_track_every=2))
    skipping.plan(scene({}, seed=0), [])
    monkeypatch.setattr(skipping, "motion_mask", lambda image: everything)
    plans = [skipping.plan(scene({}, seed=t), tracks) for t in range(1, 6)]
    assert [(p.whole, len(p.tracks)) for p in plans] == [
        (False, 0),
        (False, 1),
        (False, 0),
        (False, 1),
        (True, 0),
    ]
    assert skipping.skipped_frames == 2
    # a track seen once is searched on those frames too: it dies at its second miss
    young = [np.array([10, 10, 30, 30])]
    assert skipping.plan(scene({}, seed=6), tracks, young).tracks == young
    # crowd_full_every 1: every crowded frame is searched whole (before track canvases)
    every = MotionGate(12, GateConfig(full_every=50, crowd_full_every=1))
    every.plan(scene({}, seed=0), [])
    monkeypatch.setattr(every, "motion_mask", lambda image: everything)
    assert every.plan(scene({}, seed=1), tracks).whole
    # a little motion: its regions and the tracks
    quiet = MotionGate(12, GateConfig(full_every=50))
    quiet.plan(scene({}, seed=0), [])
    some = np.zeros_like(everything)
    some[10:20, 10:20] = 255
    monkeypatch.setattr(quiet, "motion_mask", lambda image: some)
    plan = quiet.plan(scene({}, seed=1), tracks)
    # a few movers: the moving region and the track's box, both as crops, no canvas
    assert not plan.whole and len(plan.regions) == 2 and plan.tracks == []
    # movers over 40% of the frame (GateConfig.max_area) are a crowd: canvases, no crops
    wide = MotionGate(12, GateConfig(full_every=50, crowd_track_every=1))
    wide.plan(scene({}, seed=0), [])
    band = np.zeros_like(everything)
    band[:, : int(0.42 * band.shape[1])] = 255
    monkeypatch.setattr(wide, "motion_mask", lambda image: band)
    plan = wide.plan(scene({}, seed=1), tracks)
    assert plan.regions == [] and len(plan.tracks) == 1 and wide.crowded_frames == 1


def test_track_canvases_give_boxes_in_frame_pixels():
    """A small face keeps its size on its canvas, a large one is shrunk to the canvas face;
    both come back in frame pixels; a face cut by a canvas's edge is dropped."""
    image = np.full((H, W, 3), 90, np.uint8)
    image[40:60, 30:50] = COLOURS["red"]  # 20 px
    image[100:200, 150:250] = COLOURS["blue"]  # 100 px: shrunk to 48 on its canvas
    truth = {f.box.tobytes(): f for f in ColourDetector().detect(image)}
    boxes = [np.array([31, 41, 51, 61.0]), np.array([148, 104, 248, 204.0])]
    config = GateConfig(track_pad=0.5)
    faces = detect_tracks(ColourDetector(), image, boxes, config, 12)
    assert len(faces) == 2
    for face in faces:
        near = min(truth.values(), key=lambda f: np.abs(f.box - face.box).max())
        assert np.abs(near.box - face.box).max() <= 2.5
    # a track box between the two squares: its canvas cuts red at the edge, which is dropped
    cut = detect_tracks(ColourDetector(), image, [np.array([55, 41, 75, 61.0])], config, 12)
    assert cut == []
    # a crop keeps what it finds (a partial face is dropped later, as a duplicate of a whole)
    assert len(detect_regions(ColourDetector(), image, [(0, 0, 45, H)])) == 1


def test_track_canvases_search_faces_near_the_tracked_size():
    class Sizes(MTCNN):
        """Records the face sizes each batch is searched for; finds nothing."""

        def __init__(self):  # no weights: only the call is looked at
            self.min_face, self.calls = 12, []

        def detect_batch(self, images, min_face=None, max_face=None):
            self.calls.append((len(images), min_face, max_face))
            return [[] for _ in images]

    image = np.full((H, W, 3), 90, np.uint8)
    detector = Sizes()
    # 30 px faces: from 30 / 1.5 to 30 * 1.5 (GateConfig.canvas_range); 100 px faces are
    # shrunk to 48 on their canvases, a group of their own
    boxes = [np.array([40, 40, 70, 70.0]), np.array([100, 40, 130, 70.0])]
    detect_tracks(detector, image, boxes + [np.array([150, 100, 250, 200.0])], GateConfig(), 12)
    assert sorted(detector.calls) == [(1, 32.0, 72.0), (2, 20.0, 45.0)]


def test_bad_full_every_is_refused():
    with pytest.raises(ValueError, match="full_every"):
        GateConfig(full_every=0)


def test_covered_share_counts_the_cells_any_region_reaches():
    # painted cell by cell, as the gate did region by region; regions reach the frame's far
    # edge (cells beyond the grid's last) and overlap each other
    rng = np.random.default_rng(0)
    rows, cols, step = 80, 106, 3  # a 320 x 240 frame's grid at step 3 (319 px left over)
    for count in (0, 1, 5, 300):
        x1, y1 = rng.integers(0, 320, count), rng.integers(0, 240, count)
        x2 = np.minimum(x1 + rng.integers(1, 60, count), 320)
        y2 = np.minimum(y1 + rng.integers(1, 60, count), 240)
        regions = np.stack([x1, y1, x2, y2], 1)
        painted = np.zeros((rows, cols), bool)
        for a, b, c, d in regions:
            painted[b // step : -(-d // step), a // step : -(-c // step)] = True
        assert covered_share(regions, (rows, cols), step) == painted.mean(), f"{count} regions"
