"""The served gallery: the store, its faiss index and its enrolled faces kept in step, safe to
call from the service's worker threads.

The index is a ``lrface.search.sync.LiveGallery``: changes made here and those other processes
commit (another server, an ``lrface gallery enroll``, a removal) are applied before the next
search, and at once where the store pushes them (PostgreSQL). The enrolled faces that
duplicate checks compare a new photo with (``EnrolledFaces``) follow our own changes in place
and are read again when another process changed the store. With a ``Normalizer`` single-face
searches are scored by it and each enrolment stores the identity's gallery-side statistics;
video tracks are searched by cosine (``search_raw``), as ``lrface watch`` does by default.
"""

from __future__ import annotations

import threading

import numpy as np

from lrface.search.decision import gallery_searcher
from lrface.search.duplicates import EnrolledFaces
from lrface.search.normalize import Normalizer
from lrface.search.store import AuditEntry, Enrolment, GalleryStore, IdentityInfo
from lrface.search.sync import LiveGallery


class WatchList:
    """The store, its live faiss index and its enrolled faces, under one lock."""

    def __init__(self, store: GalleryStore, normalizer: Normalizer | None = None):
        self.store = store
        self.normalizer = normalizer
        self._lock = threading.Lock()
        self.live = LiveGallery(store, normalizer=normalizer)
        self._faces_generation = store.generation()
        self._faces = EnrolledFaces(store)

    def _faces_in_step(self) -> EnrolledFaces:
        """The enrolled faces, read again first if the store changed since (under the lock)."""
        generation = self.store.generation()
        if generation != self._faces_generation:
            self._faces = EnrolledFaces(self.store)
            self._faces_generation = generation
        return self._faces

    def _changed_faces(self, generation: int, change) -> None:
        """Our own committed change: applied to the enrolled faces in place when nothing else
        committed in between (else they are read again when next needed)."""
        if generation == self._faces_generation + 1:
            change(self._faces)
            self._faces_generation = generation

    def resolve(self, name: str) -> str | None:
        """The enrolled spelling of ``name`` (same name key), or None."""
        with self._lock:
            return self.store.resolve(name)

    def known(self, name: str) -> set[str]:
        """SHA-256 of the photos already enrolled for ``name``."""
        with self._lock:
            return self.store.enrolled_hashes(name)

    def duplicates(self, name: str, source: str, sha256: str, embedding: np.ndarray) -> list[str]:
        """Warnings when this photo is already enrolled under another name."""
        with self._lock:
            return self._faces_in_step().warnings(name, source, sha256, embedding)

    def add(self, name: str, enrolments: list[Enrolment]) -> int:
        """Store ``enrolments``; the number actually added (NameConflict when ``name`` is
        another spelling of an enrolled identity). Searches see them at once."""
        with self._lock:
            added, generation = self.store.add(name, enrolments)
            if added == len(enrolments):
                vectors = np.stack([e.embedding for e in enrolments])
                self._changed_faces(generation, lambda faces: faces.add(name, vectors))
        self.live.refresh()
        if added and self.normalizer is not None:  # gallery-side statistics, stored
            with self._lock:
                self.store.put_identity_stats({name: self.live.identity_stats(name)})
        return added

    def remove(self, name: str, actor: str | None = None) -> None:
        """Erase ``name`` (KeyError if absent), audited as ``actor``'s when given."""
        with self._lock:
            generation = self.store.remove(name, actor)
            self._changed_faces(generation, lambda faces: faces.remove(name))
        self.live.refresh()

    def search_top(self, embeddings: np.ndarray, k: int, probes=None) -> list[list]:
        """A ``lrface.search.decision.Searcher`` over the index kept in step (``probes``: each
        row's ``FaceRef``, scored by the normalizer where it covers the encoder)."""
        return gallery_searcher(self.live)(embeddings, k, probes)

    def search_raw(self, embeddings: np.ndarray, k: int, probes=None) -> list[list]:
        """The same by cosine whatever the probes (``/api/watch``'s tracks, as ``lrface watch``
        scores them by default: AS-norm track thresholds raised a false alarm on real footage
        where raw ones did not, docs/openset.md)."""
        return self.search_top(embeddings, k)

    def scoring_for(self, encoder: str) -> str:
        """How searches of this encoder's probes are scored (``Gallery.scoring_for``)."""
        return self.live.scoring_for(encoder)

    def size(self) -> int:
        return len(self.live)

    def identities(self) -> list[IdentityInfo]:
        with self._lock:
            return self.store.identities()

    def thumbnail(self, name: str) -> bytes | None:
        with self._lock:
            return self.store.thumbnail(name)

    def audit(self, actor: str, action: str, target: str | None, request: dict, answer: dict):
        with self._lock:
            self.store.audit(actor, action, target, request, answer)

    def audit_log(self, limit: int, before: int | None) -> list[AuditEntry]:
        with self._lock:
            return self.store.audit_log(limit, before)

    def close(self) -> None:
        """Stop following the store, then close it."""
        self.live.close()
        with self._lock:
            self.store.close()
