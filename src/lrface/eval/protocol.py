"""LFW-style verification protocol, cross-resolution variants included. Pure functions.

Conventions
-----------
* Score: cosine similarity of L2-normalized embeddings (higher = more alike).
* Accuracy: 10-fold (or k-fold, from the pairs' fold ids). For each fold the threshold is the
  one maximizing accuracy on the *other* folds, then applied to the held-out fold; reported as
  mean +- std (population std, as insightface and the LFW literature) over folds. Candidate
  thresholds are the midpoints between consecutive distinct training scores.
* TAR @ FAR: on all trials pooled, from sklearn's ROC; the TAR at the largest FAR not above
  the target (so with 3,000 impostor trials, FAR 1e-3 allows 3 false accepts). FAR 1e-4 is
  reported too: with View 2's 6,000 HR-vs-LR impostor trials it allows none (the TAR above
  the highest impostor score), a deliberately harsh reading of the tail.
* Single-fold pair lists (View 1's dev test, one held-out View 2 fold): the threshold is
  cross-validated over ``PSEUDO_FOLDS`` interleaved pseudo-folds of the pairs (trial i in
  pseudo-fold i mod 10). People may recur across pseudo-folds, so this is for development and
  monitoring; View 2's ten person-disjoint folds are the reported protocol.
* ROC AUC: sklearn's ``roc_auc_score`` on all trials pooled.
* Calibration threshold: the accuracy-maximizing threshold on all trials pooled; this is what
  a model ships with for ``verify``.

Protocols, for a pair (a, b) and a resolution s:
* ``hr-hr``: gallery encoder on full-resolution a and b (one trial).
* ``hr-lr``: gallery encoder on full-resolution a vs probe encoder on b degraded to s, and
  the same with a and b swapped: two trials per pair, both kept in the pair's fold (the
  threshold never sees the held-out fold's people in either orientation).
* ``lr-lr``: probe encoder on a and b both degraded to s (one trial).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from lrface.vectors import l2_normalize

PROTOCOLS = ("hr-hr", "hr-lr", "lr-lr")
FAR_TARGETS = (1e-3, 1e-2, 1e-4)
PSEUDO_FOLDS = 10


def trial_folds(pair_folds: np.ndarray) -> np.ndarray:
    """The pairs' own folds, or interleaved pseudo-folds when they all share one fold."""
    pair_folds = np.asarray(pair_folds)
    if len(np.unique(pair_folds)) > 1:
        return pair_folds
    return np.arange(len(pair_folds)) % PSEUDO_FOLDS


def cosine_scores(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``N x D`` arrays."""
    return np.sum(l2_normalize(first) * l2_normalize(second), axis=1)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (predict same when score > t) with the highest accuracy on these trials."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    sorted_same = same[order].astype(np.int64)
    # Threshold just below sorted_scores[i] accepts trials i..n-1.
    positives_from = np.concatenate([np.cumsum(sorted_same[::-1])[::-1], [0]])
    negatives_below = np.concatenate([[0], np.cumsum(1 - sorted_same)])
    correct = positives_from + negatives_below
    # Only cut between distinct scores.
    distinct = np.concatenate([[True], sorted_scores[1:] > sorted_scores[:-1], [True]])
    correct = np.where(distinct, correct, -1)
    cut = int(np.argmax(correct))
    if cut == 0:
        return float(sorted_scores[0] - 1e-6)
    if cut == len(scores):
        return float(sorted_scores[-1] + 1e-6)
    return float((sorted_scores[cut - 1] + sorted_scores[cut]) / 2)


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores > threshold) == same.astype(bool)))


def kfold_accuracy(
    scores: np.ndarray, same: np.ndarray, folds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold accuracy with each fold's threshold chosen on all other folds."""
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ValueError("k-fold accuracy needs at least two folds")
    accuracies, thresholds = [], []
    for fold in fold_ids:
        test = folds == fold
        threshold = best_threshold(scores[~test], same[~test])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(scores[test], same[test], threshold))
    return np.array(accuracies), np.array(thresholds)


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """True accept rate at the largest false accept rate not above ``far``."""
    fpr, tpr, _ = roc_curve(same.astype(int), scores)
    allowed = fpr <= far + 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


@dataclass(frozen=True)
class VerificationReport:
    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    tar_far_1e_3: float
    tar_far_1e_2: float
    auc: float
    tar_far_1e_4: float
    threshold: float
    trials: int

    def to_dict(self) -> dict:
        return asdict(self)


def verification_report(
    scores: np.ndarray, same: np.ndarray, folds: np.ndarray
) -> VerificationReport:
    """Every metric of the protocol for one set of trials (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    folds = np.asarray(folds)
    fold_acc, _ = kfold_accuracy(scores, same, folds)
    return VerificationReport(
        accuracy=float(fold_acc.mean()),
        accuracy_std=float(fold_acc.std()),
        fold_accuracies=[float(a) for a in fold_acc],
        tar_far_1e_3=tar_at_far(scores, same, FAR_TARGETS[0]),
        tar_far_1e_2=tar_at_far(scores, same, FAR_TARGETS[1]),
        auc=float(roc_auc_score(same.astype(int), scores)),
        tar_far_1e_4=tar_at_far(scores, same, FAR_TARGETS[2]),
        threshold=best_threshold(scores, same),
        trials=len(scores),
    )


def protocol_trials(
    protocol: str,
    gallery_hr: tuple[np.ndarray, np.ndarray],
    probe_lr: tuple[np.ndarray, np.ndarray],
    same: np.ndarray,
    folds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, truths and folds of one protocol's trials.

    ``gallery_hr`` = (embeddings of each pair's first image, of its second) by the gallery
    encoder at full resolution; ``probe_lr`` likewise by the probe encoder at the test
    resolution.
    """
    (g_first, g_second), (p_first, p_second) = gallery_hr, probe_lr
    if protocol == "hr-hr":
        return cosine_scores(g_first, g_second), same, folds
    if protocol == "lr-lr":
        return cosine_scores(p_first, p_second), same, folds
    if protocol == "hr-lr":
        scores = np.concatenate(
            [cosine_scores(g_first, p_second), cosine_scores(g_second, p_first)]
        )
        return scores, np.concatenate([same, same]), np.concatenate([folds, folds])
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
