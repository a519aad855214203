"""Size-aware fusion of the shipped fused encoder: how much of the teacher to keep in the fused
embedding, as a function of the probe's size, fitted on LFW View 1 (never on View 2).

``lrface-lr-v2`` embeds a small face as the unit mean of the student's and the teacher's unit
embeddings: a teacher share of 1/2 at every size. At 8 px the teacher is near chance, so its
half mostly adds noise. Because both parts are unit vectors, the student's part is recovered
exactly from the fused embedding ``f`` and the teacher's own ``t`` of the same face:
``s = 2 (f . t) f - t`` (``student_part``), so every share can be scored from two cached
embeddings, without running the student alone.

``fit_shares`` picks, per size, the share (of ``SHARES``) with the best HR-vs-LR verification
accuracy on View 1's test pairs (threshold at the best split of those pairs).
"""

from __future__ import annotations

import numpy as np

from lrface.eval.protocol import accuracy_at, best_threshold, protocol_trials

SHARES = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 11))
"""Teacher shares tried: 0 (the student alone) to 1 (the teacher alone); 0.5 is shipped."""

SHIPPED_SHARE = 0.5


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def student_part(fused: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """The student's unit embedding inside ``fused`` = unit(t + s), given the teacher's ``t``."""
    fused, teacher = _unit(fused), _unit(teacher)
    dot = (fused * teacher).sum(-1, keepdims=True)
    return _unit(2 * dot * fused - teacher)


def fuse(teacher: np.ndarray, student: np.ndarray, share: float) -> np.ndarray:
    """Unit ``share * t + (1 - share) * s`` (float32)."""
    return _unit(share * _unit(teacher) + (1 - share) * _unit(student)).astype(np.float32)


def hr_lr_accuracy(
    hr: tuple[np.ndarray, np.ndarray], lr: tuple[np.ndarray, np.ndarray], same: np.ndarray
) -> float:
    """Verification accuracy of the HR-vs-LR trials at their own best threshold."""
    folds = np.zeros(len(same), np.int64)
    scores, truth, _ = protocol_trials("hr-lr", hr, lr, same, folds)
    return accuracy_at(scores, truth, best_threshold(scores, truth))


def fit_shares(
    hr: tuple[np.ndarray, np.ndarray],
    teacher_lr: dict[int, tuple[np.ndarray, np.ndarray]],
    fused_lr: dict[int, tuple[np.ndarray, np.ndarray]],
    same: np.ndarray,
) -> dict[int, tuple[float, dict[float, float]]]:
    """Per size: the best share and the accuracy of every share, on these (View 1) pairs."""
    out = {}
    for size, teacher in teacher_lr.items():
        students = tuple(student_part(f, t) for f, t in zip(fused_lr[size], teacher, strict=True))
        scored = {
            share: hr_lr_accuracy(
                hr, tuple(fuse(t, s, share) for t, s in zip(teacher, students, strict=True)), same
            )
            for share in SHARES
        }
        best = max(scored, key=lambda share: (scored[share], -abs(share - SHIPPED_SHARE)))
        out[size] = (best, scored)
    return out
