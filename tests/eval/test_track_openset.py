"""Track open-set protocol: which searches set the threshold, at which quantile, per encoder and
size, and how FPIR / FNIR are counted (synthetic scores, no data)."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.calibration import Calibration
from lrface.constants import LONG_TRACK_FACES
from lrface.eval.openset import threshold_at_fpir
from lrface.eval.track_openset import (
    WHOLE,
    TrackRecipe,
    TrackScore,
    calibrate_tracks,
    calibration_file,
    ladder_sizes,
    ladder_threshold,
    measure,
    measure_subgalleries,
    snap,
    subset_fpir,
    threshold_ladder,
    track_scores,
)
from lrface.eval.video import BinResult, ClipResult


def _passers(half, encoder, size, scores, label="14-20"):
    return [TrackScore(half, False, label, (encoder, size), s, False) for s in scores]


def test_threshold_is_the_fpir_quantile_of_calibration_passersby_per_encoder_and_size():
    ten = list(np.linspace(0.80, 0.89, 10))  # 0.80, 0.81, ..., 0.89
    scores = _passers(0, "T", 22, ten) + _passers(0, "T", 15, [0.5] * 10)
    # neither half 1's passers-by nor anyone's mated tracks move the threshold
    scores += _passers(1, "T", 22, [0.99] * 10)
    scores += [TrackScore(0, True, "14-20", ("T", 22), 0.99, True)] * 10
    scores += [TrackScore(0, False, "14-20", None, -np.inf, False)]  # no track: no key
    thresholds, counts = calibrate_tracks(scores, 0.1)
    assert set(thresholds["T"]) == {16, 24} and counts["T"] == {16: 10, 24: 10}
    t = thresholds["T"][24]  # one alarm of ten allowed: just above the second highest
    assert 0.88 < t < 0.8801
    assert sum(s >= t for s in ten) == 1
    assert thresholds["T"][24] < calibrate_tracks(scores, 0.0)[0]["T"][24]
    assert calibrate_tracks(scores, 0.1, encoders={"S"})[0] == {}
    assert calibrate_tracks(scores, 0.1, min_tracks=11)[0] == {}


def test_long_track_thresholds_come_from_whole_clip_tracks_with_an_alarm_to_spare():
    bins = _passers(0, "T", 24, np.linspace(0.80, 0.95, 40))
    whole = _passers(0, "T", 24, np.linspace(0.90, 0.99, 20), label=WHOLE)
    scores = bins + whole
    long, counts = calibrate_tracks(scores, 0.1, long=True)
    assert counts["T"] == {24: 20}  # the whole-clip tracks alone
    assert long["T"][24] == threshold_at_fpir([s.score for s in whole], 0.1)
    assert long["T"][24] > calibrate_tracks(scores, 0.1, whole=True)[0]["T"][24]
    # 20 tracks cannot set FPIR 0.01 (no alarm to spare): no long threshold; regular ones can
    assert calibrate_tracks(scores, 0.01, long=True)[0] == {}
    assert threshold_ladder(scores, 0.01, long=True) == {}
    assert calibrate_tracks(scores, 0.01, whole=True)[0]["T"]
    # measured: a whole-clip search is judged as a long track, a size-bin one is not
    seen = []
    measure(
        _passers(1, "T", 24, [0.9]) + _passers(1, "T", 24, [0.9], WHOLE),
        lambda *a: seen.append(a) or 0.5,
    )
    assert seen == [("T", 24, None), ("T", 24, LONG_TRACK_FACES)]


def test_sizes_snap_on_a_log_scale():
    assert [snap(s) for s in (12, 19, 20, 27, 28, 39, 40, 150)] == [16, 16, 24, 24, 32, 32, 48, 48]


def test_measure_counts_alarms_and_misses_per_bin_on_half_one():
    scores = [
        TrackScore(1, False, "14-20", ("T", 16), 0.95, False),  # alarm
        TrackScore(1, False, "14-20", ("T", 16), 0.85, False),
        TrackScore(1, False, "14-20", None, -np.inf, False),  # no track: no alarm
        TrackScore(1, True, "14-20", ("T", 16), 0.95, True),  # found
        TrackScore(1, True, "14-20", ("T", 16), 0.95, False),  # wrong person: miss
        TrackScore(1, True, "14-20", ("T", 16), 0.85, True),  # under the threshold: miss
        TrackScore(1, True, "20-28", ("S", 30), 0.85, True),  # found under S's threshold
        TrackScore(1, True, "20-28", None, -np.inf, False),  # no track: miss
        TrackScore(0, False, "14-20", ("T", 16), 0.99, False),  # calibration half: ignored
    ]
    rates = measure(scores, lambda encoder, size, faces: 0.9 if encoder == "T" else 0.8)
    low = rates["14-20"]
    assert (low.alarms, low.passersby, low.found, low.probes) == (1, 3, 1, 3)
    assert low.fpir == pytest.approx(1 / 3) and low.fnir == pytest.approx(2 / 3)
    assert rates["20-28"].fnir == pytest.approx(0.5) and np.isnan(rates["20-28"].fpir)
    assert rates["all"].probes == 5 and rates["all"].found == 2


def test_track_scores_and_the_stored_file():
    probe = ClipResult("Ann", True, {"14-20": BinResult(track_top={"size-score": ("Ann", 0.9)})})
    probe.bins["14-20"].track_probe = ("T", 18)
    probe.bins["10-14"] = BinResult(track_top={"size-score": None})
    passer = ClipResult("Bob", False, {"14-20": BinResult(track_top={"size-score": ("Ann", 0.7)})})
    passer.bins["14-20"].track_probe = ("T", 17)
    found, missing, alarm = track_scores([probe, passer], [1, 0], "size-score")
    assert found == TrackScore(1, True, "14-20", ("T", 18), 0.9, True)
    assert missing.probe is None and missing.score == -np.inf and not missing.correct
    assert alarm == TrackScore(0, False, "14-20", ("T", 17), 0.7, False)
    recipe = TrackRecipe().to_dict()
    data = calibration_file("T", "T", {16: 0.9, 24: 0.8}, {16: 10, 24: 12}, 0.01, 40, recipe)
    assert data["probes"] == "tracks" and data["gallery_size"] == 40
    assert data["recipe"]["camera"] == "blur 3 px, noise 3, JPEG 50"


def test_the_stored_file_loads_as_a_track_calibration(tmp_path):
    import json

    path = tmp_path / "t.json"
    ladder = {1: {16: 0.8}, 10: {16: 0.85}, 40: {16: 0.9}}
    data = calibration_file("T", "G", {16: 0.9}, {16: 10}, 0.01, 40, {}, ladder, True)
    path.write_text(json.dumps(data))
    calib = Calibration.load(path)
    assert calib.tracks and calib.openset == {16: 0.9} and calib.gallery == "G"
    assert calib.openset_fpir == 0.01 and calib.openset_by_gallery == ladder
    assert data["calibrated_on"] == "size-bin and whole-clip tracks"
    data["openset_by_gallery_size"]["3"] = {"24": 0.8}  # not the sizes of "openset"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="openset_by_gallery_size"):
        Calibration.load(path)


def test_whole_clip_tracks_are_measured_apart_and_calibrated_on_only_when_asked():
    scores = _passers(0, "T", 30, [0.99] * 10, WHOLE) + _passers(0, "T", 30, [0.5] * 10)
    thresholds, counts = calibrate_tracks(scores, 0.0)
    assert counts == {"T": {32: 10}} and thresholds["T"][32] < 0.51
    thresholds, counts = calibrate_tracks(scores, 0.0, whole=True)
    assert counts == {"T": {32: 20}} and thresholds["T"][32] > 0.99
    measured = _passers(1, "T", 30, [0.6, 0.4], WHOLE) + _passers(1, "T", 30, [0.6], "20-28")
    rates = measure(measured, lambda encoder, size, faces: 0.55)
    assert rates[WHOLE].alarms == 1 and rates[WHOLE].passersby == 2
    assert rates["all"].passersby == 1  # "all" is over the bins, not the whole clips


def _gallery_scores(searches: int, gallery: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.8, 0.03, (searches, gallery))


def test_ladder_threshold_grows_with_the_watch_list_and_is_the_plain_one_for_the_whole():
    rows = _gallery_scores(50, 40)
    ladder = [ladder_threshold(rows, 0.1, n) for n in (1, 3, 10, 40)]
    assert ladder == sorted(ladder) and ladder[0] < ladder[-1]
    # the whole gallery: the threshold of the plain maxima, to the last bit
    assert ladder[-1] == threshold_at_fpir(rows.max(1), 0.1)
    for n, t in zip((1, 3, 10, 40), ladder, strict=True):
        assert subset_fpir(rows, t, n) <= 0.1 < subset_fpir(rows, np.nextafter(t, -1), n) + 1e-9
    assert ladder_sizes(40) == [1, 3, 10, 30, 40] and ladder_sizes(3) == [1, 3]
    with pytest.raises(ValueError, match="not in 1..40"):
        ladder_threshold(rows, 0.1, 41)


def test_subset_fpir_is_what_random_subsets_give():
    rows = _gallery_scores(20, 30, seed=1)
    rng = np.random.default_rng(2)
    t = 0.86
    draws = [rows[i, rng.permutation(30)[:5]].max() >= t for i in range(20) for _ in range(500)]
    assert subset_fpir(rows, t, 5) == pytest.approx(np.mean(draws), abs=0.01)


def _searcher_scores(half, mated, rows, own=-1, label="14-20"):
    return [TrackScore(half, mated, label, ("T", 18), float(r.max()), False, r, own) for r in rows]


def test_threshold_ladder_per_encoder_and_size_from_half_zero_passersby():
    rows = _gallery_scores(12, 20)
    scores = _searcher_scores(0, False, rows) + _searcher_scores(1, False, rows + 0.1)
    scores += _searcher_scores(0, True, rows + 0.1, own=0)
    ladder = threshold_ladder(scores, 0.1, min_tracks=10)
    assert list(ladder["T"]) == [1, 3, 10, 20] and set(ladder["T"][20]) == {16}
    assert ladder["T"][20][16] == calibrate_tracks(scores, 0.1)[0]["T"][16]
    assert ladder["T"][1][16] < ladder["T"][10][16] <= ladder["T"][20][16]
    assert threshold_ladder(scores, 0.1, min_tracks=13) == {}


def test_sub_galleries_of_the_whole_size_measure_as_the_whole_gallery():
    rows = _gallery_scores(10, 8)
    probes = rows.copy()
    probes[:, 3] = 0.95  # each probe's own person (index 3) scores best
    scores = _searcher_scores(1, False, rows) + [
        TrackScore(1, True, "14-20", ("T", 18), 0.95, True, r, 3) for r in probes
    ]
    scores.append(TrackScore(1, False, "14-20", None, -np.inf, False))  # no track: no alarm
    t = float(np.sort(rows.max(1))[-3])  # lets 3 of 10 through

    def fn(encoder, size, faces):
        return t

    whole, sub = measure(scores, fn)["14-20"], measure_subgalleries(scores, fn, 8)["14-20"]
    assert (sub.fpir, sub.fnir, sub.passersby, sub.probes) == (whole.fpir, 0.0, 11, 10)
    assert whole.fpir == pytest.approx(3 / 11)
    one = measure_subgalleries(scores, fn, 1)["14-20"]  # just the own person: always found
    assert one.fnir == 0.0 and one.fpir < whole.fpir
    with pytest.raises(ValueError, match="larger than the gallery"):
        measure_subgalleries(scores, fn, 9)


def test_rescored_tracks_take_best_score_and_top1_from_the_new_scores(tmp_path):
    import json

    templates = np.eye(3, 4)
    names = ["Ann", "Bob", "Cy"]
    probe = ClipResult("Ann", True, {"14-20": BinResult(track_top={"size-score": ("Ann", 0.9)})})
    probe.bins["14-20"].track_probe = ("T", 18)
    probe.bins["14-20"].track_embedding = np.array([0.9, 0.1, 0.0, 0.0])
    seen = []

    def rescore(embedding, track):
        seen.append(track)
        return np.array([1.0, 2.5, -1.0])  # the normalization prefers Bob

    (raw,) = track_scores([probe], [1], "size-score", templates, names)
    (normalized,) = track_scores([probe], [1], "size-score", templates, names, rescore)
    assert raw.correct and raw.gallery_scores[0] == pytest.approx(0.9)
    assert seen == [("T", 18)] and normalized.score == 2.5 and not normalized.correct
    assert list(normalized.gallery_scores) == [1.0, 2.5, -1.0] and normalized.own == 0
    data = calibration_file("T", "G", {16: 2.9}, {16: 10}, 0.01, 3, {}, scoring="asnorm")
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    calib = Calibration.load(path)
    assert calib.tracks and calib.scoring == "asnorm"
    assert "scoring" not in calibration_file("T", "G", {16: 0.9}, {16: 10}, 0.01, 3, {})
