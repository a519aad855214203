"""One embedding per track: the normalized weighted sum of its faces' unit embeddings.

A track holds dozens of views of one person; the larger and more confidently detected ones
carry more identity. Weighting schemes (``WEIGHTINGS``), compared by the synthetic video
benchmark (``lrface.eval.video``, docs/video.md):

- ``uniform``: every face counts the same;
- ``size``: weight = face width in px (a 24 px face has 4x the pixels of a 12 px one, but
  only linear weight, so many small views still add up);
- ``score``: weight = detection score (MTCNN probability);
- ``size-score``: width x score.
"""

from __future__ import annotations

import numpy as np

from lrface.models.encoder import l2_normalize

WEIGHTINGS = ("uniform", "size", "score", "size-score")


def face_weights(widths: np.ndarray, scores: np.ndarray, weighting: str) -> np.ndarray:
    """Non-negative weight per face under ``weighting``."""
    widths = np.asarray(widths, np.float64)
    scores = np.clip(np.asarray(scores, np.float64), 0.0, None)
    if weighting == "uniform":
        return np.ones_like(widths)
    if weighting == "size":
        return widths
    if weighting == "score":
        return scores
    if weighting == "size-score":
        return widths * scores
    raise ValueError(f"unknown weighting {weighting!r}; one of {WEIGHTINGS}")


def aggregate(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unit vector along ``sum_i w_i e_i`` (uniform when every weight is 0)."""
    embeddings = np.asarray(embeddings, np.float32)
    weights = np.asarray(weights, np.float64)
    if not weights.sum() > 0:
        weights = np.ones(len(embeddings))
    pooled = (weights[:, None] * embeddings).sum(0, keepdims=True).astype(np.float32)
    return l2_normalize(pooled)[0]
