"""The served gallery: the store, its faiss index and its enrolled faces kept in step, safe to
call from the service's worker threads.

The index is built from the store at start. Changes made here are applied to it at once;
changes by other processes (an ``lrface gallery enroll`` into the same database) are seen
through the store's generation counter, checked before every search.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from lrface.search.decision import gallery_searcher
from lrface.search.duplicates import EnrolledFaces
from lrface.search.gallery import Gallery
from lrface.search.store import AuditEntry, Enrolment, GalleryStore, IdentityInfo


class WatchList:
    """The store, its faiss index and its enrolled faces, under one lock."""

    def __init__(self, store: GalleryStore):
        self.store = store
        self._lock = threading.Lock()
        self._generation = store.generation()
        self._gallery = store.load_gallery()
        self._faces = EnrolledFaces(store)

    def _in_step(self) -> Gallery:
        """The index, rebuilt first if another process changed the store (under the lock)."""
        generation = self.store.generation()
        if generation != self._generation:
            self._gallery = self.store.load_gallery()
            self._faces = EnrolledFaces(self.store)
            self._generation = generation
        return self._gallery

    def _applied(self, generation: int, apply: Callable[[], object]) -> None:
        """Apply our own committed change; rebuild if another writer committed in between."""
        if generation == self._generation + 1:
            apply()
            self._generation = generation
        else:
            self._in_step()

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
            self._in_step()
            return self._faces.warnings(name, source, sha256, embedding)

    def add(self, name: str, enrolments: list[Enrolment]) -> int:
        """Store ``enrolments`` and add them to the index; the number actually added
        (NameConflict when ``name`` is another spelling of an enrolled identity)."""
        with self._lock:
            added, generation = self.store.add(name, enrolments)
            if added == len(enrolments):
                vectors = np.stack([e.embedding for e in enrolments])

                def apply() -> None:
                    self._gallery.add(name, vectors)
                    self._faces.add(name, vectors)

                self._applied(generation, apply)
            else:  # a concurrent request enrolled some of the same photos first
                self._in_step()
        return added

    def remove(self, name: str, actor: str | None = None) -> None:
        """Erase ``name`` (KeyError if absent), audited as ``actor``'s when given."""
        with self._lock:
            generation = self.store.remove(name, actor)

            def apply() -> None:
                self._gallery.remove(name)
                self._faces.remove(name)

            self._applied(generation, apply)

    def search_top(self, embeddings: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """A ``lrface.search.decision.Searcher`` over the index kept in step."""
        with self._lock:
            return gallery_searcher(self._in_step())(embeddings, k)

    def size(self) -> int:
        with self._lock:
            return len(self._in_step())

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
        with self._lock:
            self.store.close()
