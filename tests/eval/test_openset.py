"""Open-set protocol: split, threshold at a target FPIR, FPIR / FNIR conventions."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.eval.openset import (
    evaluate_openset,
    evaluate_scores,
    fnir,
    fpir,
    split_people,
    threshold_at_fpir,
)


def test_threshold_at_fpir_is_the_smallest_that_meets_the_target():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    t = threshold_at_fpir(scores, 0.1)  # one false positive of ten allowed
    assert fpir(scores, t) == pytest.approx(0.1) and 0.8 < t < 0.8001
    assert fpir(scores, threshold_at_fpir(scores, 0.0)) == 0.0
    tied = np.array([0.5, 0.5, 0.5, 0.1])
    assert fpir(tied, threshold_at_fpir(tied, 0.3)) == 0.0  # ties cannot be split
    with pytest.raises(ValueError, match="target FPIR"):
        threshold_at_fpir(scores, 1.0)


def test_fnir_counts_wrong_identities_and_low_scores():
    scores = np.array([0.9, 0.9, 0.4, 0.8])
    correct = np.array([True, False, True, True])
    assert fnir(scores, correct, 0.5) == pytest.approx(0.5)  # a wrong one and a low one
    assert fnir(scores, correct, -np.inf) == pytest.approx(0.25)


def test_split_is_seeded_and_people_disjoint():
    images = {f"p{i}": [f"p{i}/{j}.jpg" for j in range(1 + i % 4)] for i in range(40)}
    split = split_people(images, seed=3)
    assert split.probes == split_people(images, seed=3).probes
    assert split.probes != split_people(images, seed=4).probes
    enrolled = set(split.gallery_names)
    assert all(len(images[p]) >= 2 for p in enrolled)
    assert len(enrolled) == sum(len(v) >= 2 for v in images.values()) // 2
    assert not set(split.gallery) & set(split.probes)
    halves: dict[str, set[int]] = {}
    for path, half in zip(split.probes, split.probe_half, strict=True):
        halves.setdefault(path.split("/")[0], set()).add(int(half))
    assert all(len(h) == 1 for h in halves.values()) and {0, 1} <= set().union(*halves.values())
    strangers = {
        p.split("/")[0] for p, n in zip(split.probes, split.probe_names, strict=True) if n is None
    }
    assert not strangers & enrolled


def test_evaluate_openset_sets_on_one_half_and_reports_on_the_other():
    rng = np.random.default_rng(0)
    images = {f"p{i}": [f"p{i}/{j}.jpg" for j in range(3)] for i in range(60)}
    split = split_people(images, seed=0)
    centres = {p: v / np.linalg.norm(v) for p, v in ((p, rng.normal(size=16)) for p in images)}
    gallery = np.stack([centres[p] for p in split.gallery_names])
    probes = []
    for path in split.probes:
        v = centres[path.split("/")[0]] + 0.3 * rng.normal(size=16)
        probes.append(v / np.linalg.norm(v))
    result = evaluate_openset(gallery, split.gallery_names, np.stack(probes), split, 0.05, 16)
    assert result.mated + result.nonmated == int((split.probe_half == 1).sum())
    assert result.fpir <= 0.2 and result.fnir < 0.5 and result.rank1_miss <= result.fnir
    # a threshold set elsewhere is applied as given: above every score, nothing is answered
    scores = np.stack(probes) @ gallery.T
    fixed = evaluate_scores(scores, split.gallery_names, split, 0.05, 16, threshold=2.0)
    assert fixed.threshold == 2.0 and fixed.fpir == 0.0 and fixed.fnir == 1.0
    assert fixed.rank1_miss == result.rank1_miss


def test_normalized_rows_undo_a_probe_that_scores_high_with_everyone():
    """A probe kind that scores high against everyone (a stranger's blurry face) passes a raw
    threshold; T-norm / AS-norm judge it against the cohort and keep mated searches found."""
    from lrface.eval.openset_lfw import normalized_rows

    rng = np.random.default_rng(1)
    dim = 32
    images = {f"p{i}": [f"p{i}/{j}.jpg" for j in range(3)] for i in range(200)}
    split = split_people(images, seed=0)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    hub = unit(rng.normal(size=dim))  # what every face shares (the mean face)
    centres = {p: unit(rng.normal(size=dim) / np.sqrt(dim) + 0.5 * hub) for p in images}
    gallery = np.stack([centres[p] for p in split.gallery_names])
    # half the probes lean towards a common direction: they score high with every template
    lean = rng.random(len(split.probes)) < 0.5
    probes = unit(
        np.stack([centres[p.split("/")[0]] for p in split.probes])
        + 0.8 * rng.normal(size=(len(split.probes), dim)) / np.sqrt(dim)
        + np.where(lean[:, None], 3.0 * hub, 0.0)
    )
    cohort_gallery = unit(rng.normal(size=(400, dim)) / np.sqrt(dim) + 0.5 * hub)
    cohort_band = unit(
        rng.normal(size=(400, dim)) + np.where(rng.random((400, 1)) < 0.5, 1.0 * hub, 0)
    )
    rows = normalized_rows(
        gallery, probes, split, cohort_gallery, cohort_band, 16, [0.05], ("raw", "tnorm", "asnorm"),
        top_k=50,
    )  # fmt: skip
    by = {r.method: r for r in rows}
    assert set(by) == {"raw", "tnorm", "asnorm"} and all(r.target_fpir == 0.05 for r in rows)
    assert by["tnorm"].fnir < by["raw"].fnir and by["asnorm"].fnir < by["raw"].fnir
    # T-norm is affine per probe: it never reorders a probe's candidates
    assert by["tnorm"].rank1_miss == by["raw"].rank1_miss
    assert all(r.rank5_miss <= r.rank1_miss for r in rows)


def test_normalized_thresholds_are_written_beside_the_raw_ones_and_name_their_cohort(tmp_path):
    """``calibrate-openset --scoring asnorm``: the thresholds go into a file of their own (the
    ``-asnorm`` one, new where there is none) that names the scoring, cohort and gallery size;
    an encoder with no cohort or an unknown scoring is refused by name."""
    import json

    import pytest

    from lrface.calibration import Calibration, calibration_path
    from lrface.eval.openset import OpenSetResult
    from lrface.eval.openset_lfw import scoring_setup, write_openset

    teacher = "dlib-resnet-torch"
    assert scoring_setup(teacher, "raw") == (None, calibration_path(teacher))
    cohort, own = scoring_setup("dlib-resnet-torch", "asnorm")
    assert cohort is not None and own.name == "dlib-resnet-torch-asnorm.json"
    with pytest.raises(ValueError, match="no stored cohort"):
        scoring_setup(str(tmp_path), "asnorm")
    with pytest.raises(ValueError, match="scoring must be one of"):
        scoring_setup("dlib-resnet-torch", "cosine")
    split = split_people({f"p{i}": [f"p{i}/{j}.jpg" for j in range(2)] for i in range(8)}, 0)
    row = OpenSetResult(16, 0.01, 2.5, 0.0, 0.5, 0.4, 4, 4, method="asnorm")
    fresh = tmp_path / "mine-asnorm.json"  # no such file yet: a new calibration
    paths = write_openset(
        tmp_path / "out", [row], split, 0, "G", "P", 0.01, 0, {}, fresh, True, cohort, "asnorm"
    )
    assert paths[2] == fresh
    data = json.loads(fresh.read_text())
    assert data["cohort"] == f"{cohort.encoder}@{cohort.digest}" and data["top_k"] > 0
    assert data["gallery_size"] == len(split.gallery) and data["openset"] == {"16": 2.5}
    calib = Calibration.load(fresh)
    assert calib.scoring == "asnorm" and calib.openset_fpir == 0.01


def test_the_protocol_embeds_probes_as_a_still_image_search_does():
    from types import SimpleNamespace

    from lrface.constants import SEARCH_PROBE_FLIP
    from lrface.eval.openset_lfw import served_probe_flip

    assert served_probe_flip(SimpleNamespace(teacher=None)) is SEARCH_PROBE_FLIP
    assert served_probe_flip(SimpleNamespace(teacher="dlib-resnet-torch")) is False
