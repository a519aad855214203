"""One embedding per track: the normalized weighted sum of its faces' unit embeddings.

A track holds dozens of views of one person; the larger and more confidently detected ones
carry more identity. Weighting schemes (``WEIGHTINGS``), compared by the synthetic video
benchmark (``lrface.eval.video``, docs/video.md):

- ``uniform``: every face counts the same;
- ``size``: weight = face width in px (a 24 px face has 4x the pixels of a 12 px one, but
  only linear weight, so many small views still add up);
- ``score``: weight = detection score (MTCNN probability);
- ``size-score``: width x score;
- ``quality``: width x score x *agreement*, the cosine (floored at 0) between a face's
  embedding and the width x score pooled embedding of the track's other faces: a view that
  disagrees with the rest (a profile, a motion-blurred or half-occluded face, a detection
  that drifted to the background) counts less. A one-face track weighs as ``size-score``.
  Sharpness is not a separate factor: a blurred view already disagrees.
"""

from __future__ import annotations

import numpy as np

from lrface.models.encoder import l2_normalize

WEIGHTINGS = ("uniform", "size", "score", "size-score", "quality")


def agreement(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per face: cosine (floored at 0) between its unit embedding and the ``weights``-pooled
    embedding of the other faces (1 for a face with no other)."""
    embeddings = np.asarray(embeddings, np.float64)
    weights = np.asarray(weights, np.float64)
    if len(embeddings) < 2:
        return np.ones(len(embeddings))
    total = (weights[:, None] * embeddings).sum(0)
    others = total[None] - weights[:, None] * embeddings
    norms = np.linalg.norm(others, axis=1)
    cosine = (others * embeddings).sum(1) / np.maximum(norms, 1e-12)
    return np.where(norms > 1e-12, np.clip(cosine, 0.0, None), 1.0)


def face_weights(
    widths: np.ndarray,
    scores: np.ndarray,
    weighting: str,
    embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """Non-negative weight per face under ``weighting`` (``quality`` also reads the faces'
    ``embeddings``; without them it is ``size-score``)."""
    widths = np.asarray(widths, np.float64)
    scores = np.clip(np.asarray(scores, np.float64), 0.0, None)
    if weighting == "quality":
        base = widths * scores
        return base if embeddings is None else base * agreement(embeddings, base)
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
