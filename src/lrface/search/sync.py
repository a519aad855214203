"""``LiveGallery``: a process's faiss index of a store, kept in step with the changes every
process commits to it.

Each change bumps the store's generation and records which identity it touched
(``GalleryStore.changes_since``), so an update reads just those identities again. It runs

- at once, when the store can push (PostgreSQL ``LISTEN``: a background thread, which also
  checks the generation once a second in case a notification was lost while reconnecting);
- before every search (``search``), whatever the store: one cheap query when nothing changed,
  so no search ever answers from an index older than the last commit it could see.

When the change log no longer reaches back to the index's generation, the index is rebuilt
from the whole store. With a ``Normalizer`` the index scores searches by it, with the
gallery-side statistics stored at enrolment (an identity changed since has its own computed
again from its template). Thread-safe: the index is changed and searched under one lock.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from lrface.search.gallery import Gallery, Match
from lrface.search.normalize import Normalizer
from lrface.search.store import GalleryStore

log = logging.getLogger("lrface.search")


class LiveGallery:
    """The faiss ``Gallery`` of ``store`` and the generation it reflects; ``listen`` starts
    the background thread where the store pushes changes; ``normalizer``: how searches are
    scored (None: raw cosine)."""

    def __init__(
        self, store: GalleryStore, listen: bool = True, normalizer: Normalizer | None = None
    ):
        self.store = store
        self.normalizer = normalizer
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.reloads = 0
        self.updates = 0
        self._reload()
        self._thread = None
        if listen:
            self._thread = threading.Thread(
                target=store.watch_changes, args=(self._refresh_quietly, self._stop), daemon=True
            )
            self._thread.start()

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def encoder(self) -> str:
        """The store's encoder key (the embeddings' maker)."""
        return self.store.encoder

    @property
    def index_kind(self) -> str:
        """Exact or approximate search, as ``Gallery.choose_index`` picked at the last load."""
        return self._gallery.index_kind

    def _reload(self) -> None:
        generation = self.store.generation()  # before the rows: a later change is seen again
        gallery = Gallery(self.store.encoder, self.store.dim, self.store.encoder_name)
        names: dict[int, str] = {}
        for ident, name, vectors in self.store.identity_rows():
            gallery.add(name, vectors)
            names[ident] = name
        gallery.choose_index()
        if self.normalizer is not None:
            gallery.use_scoring(self.normalizer, self.store.identity_stats())
        self._gallery, self._names, self._generation = gallery, names, generation
        self.reloads += 1

    def refresh(self) -> Gallery:
        """Apply every change committed since the index's generation; the index."""
        with self._lock:
            changes = self.store.changes_since(self._generation)
            if changes is None:
                self._reload()
            elif changes[1]:
                self._apply(*changes)
            return self._gallery

    def _apply(self, generation: int, ids: list[int]) -> None:
        """Read the identities ``ids`` again: gone ones leave the index, others are replaced."""
        rows = {ident: (name, vectors) for ident, name, vectors in self.store.identity_rows(ids)}
        for ident in ids:
            if ident not in rows and ident in self._names:
                name = self._names.pop(ident)
                if name in self._gallery:
                    self._gallery.remove(name)
        for ident, (name, vectors) in rows.items():
            if name in self._gallery:
                self._gallery.remove(name)
            self._gallery.add(name, vectors)
            self._names[ident] = name
        self._generation = generation
        self.updates += 1

    def _refresh_quietly(self) -> None:
        """The listener's call: a failure is logged, and the next search tries again."""
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 (a background thread must not die of a blip)
            if not self._stop.is_set():  # not the store closing under it
                log.exception("updating the gallery index from %s failed", self.store.path)

    def search(self, embeddings: np.ndarray, k: int, probes=None) -> list[list[Match]]:
        """``Gallery.search`` on the index brought up to date first (``probes``: each row's
        ``FaceRef``, scored by the normalizer where it covers the encoder)."""
        with self._lock:
            return self.refresh().search(embeddings, k, probes)

    def scoring_for(self, encoder: str) -> str:
        """How a probe of ``encoder`` is scored (``Gallery.scoring_for``)."""
        with self._lock:
            return self._gallery.scoring_for(encoder)

    def identity_stats(self, name: str) -> dict[str, np.ndarray]:
        """Gallery-side normalization statistics of ``name`` (``Gallery.identity_stats``),
        for the store to keep (``GalleryStore.put_identity_stats``)."""
        with self._lock:
            return self.refresh().identity_stats(name)

    def __len__(self) -> int:
        with self._lock:
            return len(self.refresh())

    def close(self) -> None:
        """Stop the listener (it notices within a second), before the store is closed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
