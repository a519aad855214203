"""Open-set protocol: split, threshold at a target FPIR, FPIR / FNIR conventions."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.eval.openset import evaluate_openset, fnir, fpir, split_people, threshold_at_fpir


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
