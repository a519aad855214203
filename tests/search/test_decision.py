"""The one open-set decision: known at or above the threshold, unknown under it or with nobody
enrolled, a ranking without a threshold; one JSON shape."""

from lrface.search.decision import decide

TOP = [("Ann", 0.8), ("Bo", 0.3)]


def test_a_score_at_the_threshold_is_known_and_under_it_unknown():
    assert decide(TOP, 0.8).identity == "Ann"
    under = decide(TOP, 0.81, "calib.json [16]", "16 px")
    assert under.unknown and under.score == 0.8
    assert under.describe() == "unknown (best score 0.8000 < threshold 0.8100; 16 px)"


def test_without_a_threshold_the_best_match_is_a_ranking_that_says_why():
    ranked = decide(TOP, None, reason="no open-set calibration")
    assert ranked.identity == "Ann" and ranked.describe() == "undecided (no open-set calibration)"


def test_an_empty_gallery_is_unknown():
    empty = decide([], 0.5)
    assert empty.unknown and empty.score is None
    assert empty.describe().startswith("unknown (empty gallery")


def test_the_json_shape():
    assert decide(TOP, 0.123456, "given", "--threshold").to_dict() == {
        "identity": "Ann",
        "score": 0.8,
        "threshold": 0.1235,
        "threshold_source": "given",
        "threshold_reason": "--threshold",
        "top": [{"name": "Ann", "score": 0.8}, {"name": "Bo", "score": 0.3}],
    }
    assert decide(TOP, 0.9).to_dict()["identity"] == "unknown"
