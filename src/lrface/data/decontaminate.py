"""Decontamination: find the faces of one set that match any face of a reference set.

Pure numpy on unit embeddings (cosine = dot product). Used to drop every training face that the
teacher matches to an LFW image before any LFW figure, because web-crawled face sets (UTKFace)
hold public figures that LFW holds too.

The threshold is chosen on the reference set itself: the cosine score exceeded by a fraction
``far`` of its different-person pairs (a per-comparison false accept rate). Each training face
is compared with every reference image, so a face of nobody in LFW is dropped by chance with
probability about ``1 - (1 - far) ** len(reference)``: a strict ``far`` (1e-5 for LFW's 13,233
images drops about 12% at most by chance) keeps the data, a loose one throws it away.
"""

from __future__ import annotations

import numpy as np


def best_matches(
    query: np.ndarray, reference: np.ndarray, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: index of its most similar reference row and that cosine score."""
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError("query and reference must be N x D and M x D with the same D")
    index = np.zeros(len(query), np.int64)
    score = np.full(len(query), -np.inf, np.float32)
    for start in range(0, len(query), chunk):
        sims = query[start : start + chunk] @ reference.T
        index[start : start + chunk] = sims.argmax(1)
        score[start : start + chunk] = sims.max(1)
    return index, score


def impostor_threshold(
    embeddings: np.ndarray, identities: np.ndarray, far: float, chunk: int = 1024
) -> float:
    """Cosine score above which a fraction ``far`` of the different-identity pairs lie.

    Every unordered pair of rows with different ``identities`` counts once. Only the top
    ``ceil(far * pairs)`` impostor scores are kept while scanning, so memory stays small.
    """
    identities = np.asarray(identities)
    n = len(embeddings)
    same_counts = np.unique(identities, return_counts=True)[1]
    pairs = n * (n - 1) // 2 - int((same_counts * (same_counts - 1) // 2).sum())
    keep = max(1, int(np.ceil(far * pairs)))
    if keep > pairs:
        raise ValueError(f"far={far} asks for more impostor pairs than the {pairs} there are")
    top = np.empty(0, np.float32)
    for start in range(0, n, chunk):
        block = embeddings[start : start + chunk] @ embeddings.T
        rows = np.arange(start, min(start + chunk, n))[:, None]
        upper = np.arange(n)[None, :] > rows
        impostor = upper & (identities[rows] != identities[None, :])
        top = np.concatenate([top, block[impostor].astype(np.float32)])
        if len(top) > keep:
            top = np.partition(top, len(top) - keep)[-keep:]
    return float(top.min())
