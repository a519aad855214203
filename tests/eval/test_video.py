"""The synthetic CCTV benchmark's clips and scoring on hand-made inputs with known answers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from lrface.eval.video import (
    BinResult,
    Camera,
    ClipResult,
    ClipSpec,
    frame_bins,
    make_clip,
    summarize,
)

BINS = [(10.0, 14.0), (14.0, 20.0), (20.0, 28.0), (28.0, 40.0)]


def _photo() -> tuple[np.ndarray, np.ndarray]:
    """A grey 'photo' with a red 'face' whose box is [40, 40, 80, 90]."""
    photo = np.full((130, 120, 3), 128, np.uint8)
    photo[40:90, 40:80] = (230, 20, 20)
    return photo, np.array([40, 40, 80, 90], np.float32)


def test_faces_shrink_geometrically_and_the_bins_split_the_clip():
    sizes = ClipSpec("a", [], 40, 32, end_size=10).frame_sizes()
    assert sizes[0] == pytest.approx(40) and sizes[-1] == pytest.approx(10)
    assert np.all(np.diff(sizes) < 0)
    assert Counter(frame_bins(sizes, BINS)) == {"10-14": 8, "14-20": 8, "20-28": 8, "28-40": 8}
    fixed = ClipSpec("a", [], 16, 5).frame_sizes()
    assert frame_bins(fixed, [(12.0, 12.0), (16.0, 16.0)]) == ["16"] * 5
    assert frame_bins(np.array([9.0, 41.0]), BINS) == [None, None]


def test_camera_parses_and_refuses_bad_settings():
    assert Camera.parse("3,3,50") == Camera()
    assert Camera.parse("1,0,none") == Camera(1, 0.0, None)
    assert "JPEG off" in Camera(1, 0, None).label()
    with pytest.raises(ValueError, match="blur,noise,jpeg"):
        Camera.parse("3,3")
    with pytest.raises(ValueError, match="bad camera"):
        Camera(0, 3, 50)


def test_clip_boxes_are_where_the_face_is_and_cameras_share_the_geometry():
    spec = ClipSpec("a", [_photo()], 30, 6, seed=3, end_size=20, camera=Camera(1, 0, None))
    clip = make_clip(spec)
    assert len(clip.frames) == 6 and clip.boxes.shape == (6, 4)
    for frame, box, size in zip(clip.frames, clip.boxes, clip.sizes, strict=True):
        assert 0.94 * size <= box[2] - box[0] <= 1.06 * size
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        assert tuple(frame[cy, cx]) == pytest.approx((230, 20, 20), abs=12)
    harsh = make_clip(ClipSpec("a", [_photo()], 30, 6, seed=3, end_size=20))
    np.testing.assert_array_equal(harsh.boxes, clip.boxes)  # only the camera differs
    assert np.abs(harsh.frames[0].astype(int) - clip.frames[0]).mean() > 1


def test_summary_counts_frames_tracks_and_watch_list_misses():
    def clip(person, enrolled, tops, track, detected):
        weights = {"uniform": track}
        return ClipResult(person, enrolled, {"12": BinResult(tops, detected, weights)})

    results = [
        clip("ann", True, [("ann", 0.9), None, ("bob", 0.95)], ("ann", 0.92), 2),
        clip("bob", True, [("bob", 0.7), ("bob", 0.8), ("bob", 0.6)], ("bob", 0.85), 3),
        clip("eve", False, [("ann", 0.88), None, None], ("ann", 0.9), 1),
    ]
    entry = summarize(results, ("uniform",))["12"]
    assert entry["frames"] == 9 and entry["detection_rate"] == pytest.approx(6 / 9)
    assert entry["frame"]["rank1"] == pytest.approx(4 / 6)
    assert entry["track/uniform"]["rank1"] == 1.0
    # no passer-by track may pass: threshold just above eve's 0.9 -> bob (0.85) missed
    assert entry["track/uniform"]["fnir@fpir=0.1"] == pytest.approx(0.5)
    # frames: eve's best 0.88 must not pass -> only ann's 0.9 is a hit among 6 probe frames
    assert entry["frame"]["fnir@fpir=0.1"] == pytest.approx(5 / 6)
    assert entry["tracks_detected"] == 1.0


def test_run_clip_pools_each_bin_and_the_whole_clip():
    from lrface.eval.video import Clip, run_clip
    from lrface.video.decide import fixed_threshold
    from lrface.video.motion import GateConfig
    from lrface.video.watcher import FaceWatcher, WatchConfig
    from tests.video.clips import ColourDetector, colour_embed, colour_searcher, crossing_frames

    frames = crossing_frames(12)
    clip = Clip(frames, np.zeros((12, 4), np.float32), np.geomspace(30, 12, 12))
    config = WatchConfig(min_faces=1, gate=GateConfig(full_every=1))
    none = fixed_threshold(None)
    watcher = FaceWatcher(ColourDetector(), colour_embed, colour_searcher, none, config)
    spec = ClipSpec("red", [], 30, 12)
    result = run_clip(clip, spec, True, watcher, ("size-score",), BINS, whole="whole")
    assert set(result.bins) == {"10-14", "14-20", "20-28", "28-40", "whole"}
    whole = result.bins["whole"]
    assert len(whole.frame_top) == 12 and whole.extra_tracks == 1  # red and blue
    assert whole.track_top["size-score"][0] in {"red", "blue"}
    assert whole.track_probe == ("colour", 20)  # the colour squares are 20 px wide
    assert sum(len(b.frame_top) for label, b in result.bins.items() if label != "whole") == 12
