import numpy as np
import pytest

from lrface.eval.protocol import (
    best_threshold,
    cosine_scores,
    kfold_accuracy,
    protocol_trials,
    tar_at_far,
    verification_report,
)


def test_best_threshold_separates_perfectly():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    same = np.array([0, 0, 0, 1, 1, 1], bool)
    assert best_threshold(scores, same) == pytest.approx(0.5)


def test_best_threshold_with_overlap_known_answer():
    # Sorted: 0.1 n, 0.4 p, 0.5 n, 0.55 n, 0.6 p, 0.9 p. Only the cut between 0.55 and 0.6
    # gets 5 of 6 right.
    scores = np.array([0.5, 0.1, 0.9, 0.4, 0.6, 0.55])
    same = np.array([0, 0, 1, 1, 1, 0], bool)
    t = best_threshold(scores, same)
    assert t == pytest.approx(0.575)
    assert np.mean((scores > t) == same) == pytest.approx(5 / 6)


def test_kfold_threshold_comes_from_other_folds():
    # Folds 0 and 1 separate at 0.5; fold 2 would need 0.85 but must use 0.5 from the others.
    scores = np.array([0.2, 0.8, 0.3, 0.7, 0.8, 0.9])
    same = np.array([0, 1, 0, 1, 0, 1], bool)
    folds = np.array([0, 0, 1, 1, 2, 2])
    acc, thresholds = kfold_accuracy(scores, same, folds)
    assert acc[2] == pytest.approx(0.5)
    assert thresholds[2] == pytest.approx(0.5)
    assert acc[0] == acc[1] == 1.0


def test_tar_at_far_known_answer():
    # 1000 impostors at 0..0.999; genuines at 0.9985 (above all but... none) and 0.5.
    impostors = np.linspace(0, 0.999, 1000)
    genuines = np.array([0.9995, 0.9985, 0.5, 0.4])
    scores = np.concatenate([impostors, genuines])
    same = np.concatenate([np.zeros(1000, bool), np.ones(4, bool)])
    # FAR 1e-3 allows 1 impostor (0.999) above the threshold: 2 of 4 genuines accepted.
    assert tar_at_far(scores, same, 1e-3) == pytest.approx(0.5)
    assert tar_at_far(scores, same, 0.0) == pytest.approx(0.25)


def test_report_on_random_scores_is_chance():
    rng = np.random.default_rng(0)
    scores = rng.random(6000)
    same = rng.random(6000) < 0.5
    folds = np.repeat(np.arange(10), 600)
    report = verification_report(scores, same, folds)
    assert 0.45 < report.accuracy < 0.55
    assert 0.45 < report.auc < 0.55
    assert len(report.fold_accuracies) == 10 and report.trials == 6000


def test_cross_resolution_trials_use_both_orientations():
    g1, g2 = np.eye(3)[[0, 1]], np.eye(3)[[0, 2]]
    p1, p2 = np.eye(3)[[0, 1]], np.eye(3)[[0, 0]]
    same, folds = np.array([True, False]), np.array([0, 1])
    scores, truth, trial_folds = protocol_trials("hr-lr", (g1, g2), (p1, p2), same, folds)
    assert np.allclose(scores, [1, 0, 1, 0])  # g1.p2, then g2.p1
    assert truth.tolist() == [True, False, True, False]
    assert trial_folds.tolist() == [0, 1, 0, 1]
    lr, _, _ = protocol_trials("lr-lr", (g1, g2), (p1, p2), same, folds)
    assert np.allclose(lr, cosine_scores(p1, p2))
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_trials("xx", (g1, g2), (p1, p2), same, folds)
