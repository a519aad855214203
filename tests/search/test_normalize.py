"""Cohort score normalization: statistics, each method's formula, centring."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.search.normalize import (
    METHODS,
    SideStats,
    centred,
    normalize_scores,
    side_stats,
)


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_side_stats_are_the_moments_of_the_cohort_scores():
    rng = np.random.default_rng(0)
    rows, cohort = unit(rng.normal(size=(3, 8))), unit(rng.normal(size=(50, 8)))
    stats = side_stats(rows, cohort, top_k=5, chunk=2)
    scores = rows @ cohort.T
    top = np.sort(scores, 1)[:, -5:]
    assert np.allclose(stats.mean, scores.mean(1)) and np.allclose(stats.std, scores.std(1))
    assert np.allclose(stats.top_mean, top.mean(1)) and np.allclose(stats.top_std, top.std(1))
    again = SideStats.from_array(stats.as_array(), stats.top_k)
    assert np.allclose(again.top_mean, stats.top_mean, atol=1e-6) and again.top_k == 5
    assert side_stats(rows, cohort, top_k=500).top_k == 50  # never more than the cohort


def test_each_method_standardizes_by_its_side():
    raw = np.array([[0.5, 0.9], [0.7, 0.2]])
    probe = SideStats(np.array([0.1, 0.3]), np.array([0.1, 0.2]), np.array([0.4, 0.5]),
                      np.array([0.05, 0.1]), 2)  # fmt: skip
    gallery = SideStats(np.array([0.2, 0.0]), np.array([0.1, 0.5]), np.array([0.6, 0.3]),
                        np.array([0.1, 0.1]), 2)  # fmt: skip
    t = (raw - probe.mean[:, None]) / probe.std[:, None]
    z = (raw - gallery.mean[None]) / gallery.std[None]
    assert np.allclose(normalize_scores(raw, "tnorm", probe, gallery), t)
    assert np.allclose(normalize_scores(raw, "znorm", probe, gallery), z)
    assert np.allclose(normalize_scores(raw, "snorm", probe, gallery), (t + z) / 2)
    at = (raw - probe.top_mean[:, None]) / probe.top_std[:, None]
    az = (raw - gallery.top_mean[None]) / gallery.top_std[None]
    assert np.allclose(normalize_scores(raw, "asnorm", probe, gallery), (at + az) / 2)
    assert np.array_equal(normalize_scores(raw, "raw", None, None), raw)
    with pytest.raises(ValueError, match="needs probe-side"):
        normalize_scores(raw, "asnorm", None, gallery)
    with pytest.raises(ValueError, match="unknown score normalization"):
        normalize_scores(raw, "bogus", probe, gallery)
    assert "asnorm" in METHODS


def test_centring_removes_the_cohort_mean_and_keeps_unit_length():
    rng = np.random.default_rng(2)
    shared = unit(rng.normal(size=16))
    a, b = unit(rng.normal(size=16) + 3 * shared), unit(rng.normal(size=16) + 3 * shared)
    mean = 3 * shared / np.linalg.norm(3 * shared + 1e-9) * 0.95
    ca, cb = centred(a, mean), centred(b, mean)
    assert np.isclose(np.linalg.norm(ca), 1) and float(ca @ cb) < float(a @ b)
