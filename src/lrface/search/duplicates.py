"""The same photo enrolled under two names: found by its bytes (SHA-256, through the store) or
by a near-identical embedding (the same photo re-encoded, resized or cropped a little), so
enrolling warns instead of silently making one face two people."""

from __future__ import annotations

import numpy as np

from lrface.search.names import name_key
from lrface.search.store import GalleryStore

NEAR_IDENTICAL = 0.98
"""Cosine at or above which a new face counts as one already enrolled: a re-encoded or resized
copy of a photo scores about this or more under the dlib teacher; different photos of one
person mostly score lower, and those that reach it are worth the same warning (one person,
two names); faces of two different people stay far below."""


class EnrolledFaces:
    """Every embedding enrolled in a store with its identity's name, kept in step by ``add``
    and ``remove``; ``warnings`` says which other identities a new photo already belongs to."""

    def __init__(self, store: GalleryStore, threshold: float = NEAR_IDENTICAL):
        self.store = store
        self.threshold = threshold
        self._names: list[str] = []
        self._vectors = np.zeros((0, store.dim), np.float32)
        for name, vectors in store.embeddings():
            self.add(name, vectors)

    def add(self, name: str, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.store.dim)
        self._names += [name] * len(vectors)
        self._vectors = np.concatenate([self._vectors, vectors])

    def remove(self, name: str) -> None:
        keep = np.array([n != name for n in self._names], bool)
        self._names = [n for n in self._names if n != name]
        self._vectors = self._vectors[keep] if len(keep) else self._vectors

    def warnings(
        self, name: str, source: str, sha256: str | None, embedding: np.ndarray
    ) -> list[str]:
        """One line per other identity holding this photo (same bytes, or a face at cosine
        >= ``threshold``); empty when it is new."""
        key = name_key(name)
        owners = self.store.photo_owners(sha256) if sha256 else set()
        same_bytes = {n for n in owners if name_key(n) != key}
        out = [
            f"{source}: the same photo (same bytes) is already enrolled for {other!r}"
            for other in sorted(same_bytes)
        ]
        if len(self._names):
            scores = self._vectors @ np.asarray(embedding, np.float32).reshape(-1)
            best: dict[str, float] = {}
            for i in np.flatnonzero(scores >= self.threshold):
                other = self._names[i]
                if name_key(other) != key and other not in same_bytes:
                    best[other] = max(best.get(other, -1.0), float(scores[i]))
            out += [
                f"{source}: a near-identical face (cosine {score:.3f}) is already enrolled "
                f"for {other!r}"
                for other, score in sorted(best.items())
            ]
        return out
