"""A 1:N gallery: one template per identity (the normalized mean of its enrolled embeddings),
searched by inner product with faiss (``IndexIDMap2`` over ``IndexFlatIP``, so identities are
added and removed in place, without a rebuild). A gallery loaded with ``APPROXIMATE_FROM``
identities or more switches to an approximate index (``choose_index``: IVF, inner product,
which also adds and removes in place), since exact search grows linearly with the gallery;
benchmarks/index_scale.py measures both (docs/service.md, "Search at scale").

On disk it is one safetensors file: the per-image embeddings as one tensor (identity by identity,
templates are recomputed on load), and
in the header metadata (key ``lrface_gallery``) a JSON document with the format version, the
lrface version, the encoder key and dimension, and the identities (id, name, source files).
Nothing in it is pickled. ``save`` writes a temporary file in the same directory, fsyncs it and
``os.replace``-s it over the old one, so an interruption leaves the previous gallery intact;
the file is mode 0600 (``mkstemp``'s), like the SQLite store's: it holds biometric data. This
single-file format is read for ``lrface gallery migrate``; galleries now live in
``lrface.search.store``, and this class is their in-memory faiss index.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from lrface.constants import __version__
from lrface.vectors import l2_normalize

if TYPE_CHECKING:
    from lrface.calibration import FaceRef
    from lrface.search.normalize import Normalizer

FORMAT = "lrface-gallery"
FORMAT_VERSION = 1
META_KEY = "lrface_gallery"
APPROXIMATE_FROM = 1_500_000
"""Identities from which ``choose_index`` picks IVF over exact search: below, exact search
costs under ~50 ms a probe on one core (docs/service.md, "Search at scale")."""

log = logging.getLogger("lrface.search")


def ivf_lists(size: int) -> int:
    """Inverted lists for ``size`` templates: a power of two near sqrt(size), 64 to 4096."""
    return int(min(max(2 ** round(np.log2(max(size, 1)) / 2), 64), 4096))


def ivf_index(
    templates: np.ndarray, ids: np.ndarray, nprobe: int | None = None, seed: int = 0
) -> faiss.IndexIVFFlat:
    """An ``IndexIVFFlat`` (inner product) holding ``templates`` under ``ids``: k-means (10
    rounds) on a sample of 32 templates per list, then every template added. A search visits
    ``nprobe`` lists, a quarter of them by default: the setting that kept recall@1 of clear
    matches at 100% in benchmarks/index_scale.py."""
    size, dim = templates.shape
    lists = ivf_lists(size)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)  # keeps it
    index.cp.niter = 10
    sample = np.random.default_rng(seed).choice(size, min(size, 32 * lists), replace=False)
    index.train(np.ascontiguousarray(templates[np.sort(sample)]))
    index.add_with_ids(templates, ids)
    index.nprobe = nprobe or max(lists // 4, 1)
    return index


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """A float32, C-ordered copy with rows scaled to unit length (what faiss searches)."""
    return np.ascontiguousarray(l2_normalize(np.asarray(vectors, np.float32)))


class GalleryError(ValueError):
    """A gallery file that cannot be used as asked; the message names the file."""


@dataclass
class Identity:
    """An enrolled person: every embedding enrolled for them and where each came from."""

    id: int
    name: str
    embeddings: np.ndarray
    sources: list[str] = field(default_factory=list)

    @property
    def template(self) -> np.ndarray:
        return unit_rows(self.embeddings.mean(0, keepdims=True))[0]


@dataclass
class Match:
    """A candidate: its score (normalized when the gallery scores so) and, then, the cosine."""

    name: str
    score: float
    raw: float | None = None

    def to_dict(self) -> dict:
        out = {"name": self.name, "score": round(self.score, 4)}
        return out if self.raw is None else {**out, "cosine": round(self.raw, 4)}


RERANK = 100
"""A normalized search rescores this many raw (faiss) candidates per probe, at least ``k``: the
gallery side of a normalization can reorder candidates, rarely from further down."""


class Gallery:
    """Identities enrolled with one encoder (``encoder`` key, ``dim``-d unit embeddings)."""

    def __init__(self, encoder: str, dim: int, encoder_name: str | None = None):
        self.encoder = encoder
        self.encoder_name = encoder_name or encoder
        self.dim = dim
        self._by_name: dict[str, Identity] = {}
        self._by_id: dict[int, Identity] = {}
        self._next_id = 0
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.normalizer: Normalizer | None = None
        self._stats: dict[int, dict[str, np.ndarray]] = {}
        self.index_kind = "flat (exact)"

    def use_scoring(
        self,
        normalizer: Normalizer | None,
        stored: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> None:
        """Score searches by ``normalizer`` (None: raw cosine). ``stored``: gallery-side
        statistics ``{name: {stats key: bands x 4}}`` computed at enrolment; any missing are
        computed here from the templates."""
        self.normalizer = normalizer
        self._stats = {}
        for name, by_key in (stored or {}).items():
            if name in self._by_name:
                self._stats[self._by_name[name].id] = dict(by_key)

    def scoring_for(self, encoder: str) -> str:
        """How a probe of ``encoder`` is scored here: the normalizer's method where it has a
        cohort of this gallery's dimension for that encoder, else ``raw``."""
        covered = (
            self.normalizer is not None
            and self.normalizer.covers(encoder)
            and self.normalizer.cohorts[encoder].gallery.shape[1] == self.dim
        )
        return self.normalizer.method if covered else "raw"

    def identity_stats(self, name: str) -> dict[str, np.ndarray]:
        """Gallery-side statistics of ``name`` for every cohort of the normalizer, as stored
        at enrolment (``{stats key: bands x 4}``)."""
        ident = self.identity(name)
        for key, cohort in self.normalizer.encoders().items():
            if cohort.gallery.shape[1] == self.dim:
                self._stats_rows(np.array([ident.id]), key, cohort)
        return dict(self._stats.get(ident.id, {}))

    def _stats_rows(self, ids: np.ndarray, key: str, cohort) -> np.ndarray:
        """``len(ids) x bands x 4`` gallery-side statistics, computing any not yet known."""
        missing = [int(i) for i in ids if key not in self._stats.get(int(i), {})]
        if missing:
            templates = np.stack([self._by_id[i].template for i in missing])
            computed = self.normalizer.gallery_stats(templates, cohort)
            for i, rows in zip(missing, computed, strict=True):
                self._stats.setdefault(i, {})[key] = rows
        return np.stack([self._stats[int(i)][key] for i in ids])

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def identity(self, name: str) -> Identity:
        if name not in self._by_name:
            raise KeyError(f"{name!r} is not in the gallery")
        return self._by_name[name]

    def add(self, name: str, embeddings: np.ndarray, sources: list[str] | None = None) -> Identity:
        """Enroll ``embeddings`` (``N x dim``) for ``name``, appending to an existing identity."""
        embeddings = np.asarray(embeddings, np.float32).reshape(-1, self.dim)
        if not len(embeddings):
            raise ValueError(f"no embeddings given for {name!r}")
        if not np.isfinite(embeddings).all():
            raise ValueError(f"non-finite embedding given for {name!r}")
        sources = list(sources) if sources is not None else [""] * len(embeddings)
        if len(sources) != len(embeddings):
            raise ValueError(f"{len(sources)} sources for {len(embeddings)} embeddings")
        if name in self._by_name:
            ident = self._by_name[name]
            ident.embeddings = np.concatenate([ident.embeddings, embeddings])
            ident.sources += sources
            self._index.remove_ids(np.array([ident.id], np.int64))
            self._stats.pop(ident.id, None)  # its template moved
        else:
            ident = Identity(self._next_id, name, embeddings, sources)
            self._next_id += 1
            self._by_name[name] = ident
            self._by_id[ident.id] = ident
        self._index.add_with_ids(ident.template[None], np.array([ident.id], np.int64))
        return ident

    def remove(self, name: str) -> None:
        """Drop ``name`` (KeyError if absent)."""
        ident = self.identity(name)
        self._index.remove_ids(np.array([ident.id], np.int64))
        self._stats.pop(ident.id, None)
        del self._by_name[name], self._by_id[ident.id]

    def search(
        self, queries: np.ndarray, k: int = 5, probes: Sequence[FaceRef] | None = None
    ) -> list[list[Match]]:
        """Top-``k`` identities for each query row, best first: by cosine, or by the
        normalized score where the gallery has a normalizer, ``probes`` says each row's encoder
        and resolution, and the normalizer has a cohort for that encoder."""
        queries = unit_rows(np.asarray(queries, np.float32).reshape(-1, self.dim))
        k = min(k, len(self))
        if k <= 0:
            return [[] for _ in queries]
        scored = [
            p is not None and self.scoring_for(p.encoder) != "raw"
            for p in (probes if probes is not None else [None] * len(queries))
        ]
        depth = min(len(self), max(k, RERANK)) if any(scored) else k
        scores, ids = self._index.search(queries, depth)
        out = []
        for row, (row_s, row_i) in enumerate(zip(scores, ids, strict=True)):
            found = row_i >= 0  # an approximate index may find fewer (id -1)
            row_s, row_i = row_s[found], row_i[found]
            if not scored[row]:
                out.append([Match(self._by_id[int(i)].name, float(s)) for s, i in
                            zip(row_s[:k], row_i[:k], strict=True)])  # fmt: skip
                continue
            probe, cohort = probes[row], self.normalizer.cohorts[probes[row].encoder]
            key = self.normalizer.stats_key(probe.encoder)
            stats = self._stats_rows(row_i, key, cohort)
            probe_stats = self.normalizer.probe_stats(queries[row : row + 1], probe.encoder)
            band = cohort.band_index(probe.resolution)
            normalized = self.normalizer.score(row_s[None], probe_stats, stats, band)[0]
            order = np.argsort(-normalized, kind="stable")[:k]
            out.append(
                [Match(self._by_id[int(row_i[j])].name, float(normalized[j]), float(row_s[j]))
                 for j in order]
            )  # fmt: skip
        return out

    def choose_index(self) -> str:
        """Exact search below ``APPROXIMATE_FROM`` identities, IVF from there (built from the
        templates now; later additions and removals go into it); logged, and returned."""
        if len(self) >= APPROXIMATE_FROM and self.index_kind.startswith("flat"):
            ids = np.array(sorted(self._by_id), np.int64)
            templates = unit_rows(np.stack([self._by_id[int(i)].template for i in ids]))
            self._index = ivf_index(templates, ids)
            self.index_kind = (
                f"IVF{self._index.nlist} nprobe={self._index.nprobe} (approximate, from "
                f"{APPROXIMATE_FROM:,} identities)"
            )
        log.info("gallery of %d identities: faiss index %s", len(self), self.index_kind)
        return self.index_kind

    def check_compatible(self, encoder: str, dim: int, path: str | os.PathLike = "gallery") -> None:
        """GalleryError unless this gallery was made by ``encoder`` with ``dim``-d embeddings."""
        if dim != self.dim:
            raise GalleryError(
                f"{path}: gallery holds {self.dim}-d embeddings of {self.encoder}, "
                f"but the encoder in use ({encoder}) gives {dim}-d ones"
            )
        if encoder != self.encoder:
            raise GalleryError(
                f"{path}: gallery was enrolled with encoder {self.encoder}, not {encoder}; "
                f"search it with that encoder or enroll a new gallery"
            )

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: temp file in the same directory, fsync, ``os.replace``."""
        path = Path(path)
        idents = sorted(self._by_id.values(), key=lambda i: i.id)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "lrface_version": __version__,
            "encoder": self.encoder,
            "encoder_name": self.encoder_name,
            "dim": self.dim,
            "next_id": self._next_id,
            "identities": [
                {"id": i.id, "name": i.name, "count": len(i.embeddings), "sources": i.sources}
                for i in idents
            ],
        }
        embeddings = (
            np.concatenate([i.embeddings for i in idents])
            if idents
            else np.zeros((0, self.dim), np.float32)
        )
        tensors = {"embeddings": np.ascontiguousarray(embeddings, np.float32)}
        payload = st_save(tensors, metadata={META_KEY: json.dumps(meta)})
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Gallery:
        """Read a gallery file; GalleryError naming the file when it is not a usable gallery."""
        path = Path(path)
        if not path.is_file():
            raise GalleryError(f"{path}: no such gallery file")
        data = path.read_bytes()
        try:
            header = _header_metadata(data)
        except _Truncated as exc:
            raise GalleryError(f"{path}: truncated or corrupt gallery file ({exc})") from None
        except (KeyError, ValueError, TypeError) as exc:
            raise GalleryError(f"{path}: not an lrface gallery file ({exc})") from None
        if META_KEY not in header:
            raise GalleryError(f"{path}: a safetensors file, but not an lrface gallery")
        try:
            meta = json.loads(header[META_KEY])
            tensors = st_load(data)
        except (SafetensorError, KeyError, ValueError, TypeError) as exc:
            raise GalleryError(f"{path}: truncated or corrupt gallery file ({exc})") from None
        if meta.get("format") != FORMAT:
            raise GalleryError(f"{path}: not an lrface gallery file")
        if meta.get("format_version") != FORMAT_VERSION:
            raise GalleryError(
                f"{path}: gallery format version {meta.get('format_version')} (written by lrface "
                f"{meta.get('lrface_version')}) is not readable by lrface {__version__}, which "
                f"reads version {FORMAT_VERSION}; enroll the gallery again"
            )
        gallery = cls(meta["encoder"], int(meta["dim"]), meta.get("encoder_name"))
        embeddings = tensors["embeddings"]
        if embeddings.ndim != 2 or embeddings.shape[1] != gallery.dim:
            raise GalleryError(
                f"{path}: embeddings of shape {embeddings.shape} do not match dim {gallery.dim}"
            )
        start = 0
        for entry in meta["identities"]:
            count = int(entry["count"])
            ident = Identity(
                int(entry["id"]), entry["name"], embeddings[start : start + count], entry["sources"]
            )
            start += count
            gallery._by_name[ident.name] = ident
            gallery._by_id[ident.id] = ident
        if start != len(embeddings):
            raise GalleryError(f"{path}: {len(embeddings)} embeddings but {start} listed")
        gallery._next_id = int(meta["next_id"])
        if gallery._by_id:
            ids = np.array(sorted(gallery._by_id), np.int64)
            templates = np.stack([gallery._by_id[int(i)].template for i in ids])
            gallery._index.add_with_ids(templates, ids)
        return gallery


class _Truncated(ValueError):
    """A safetensors buffer that ends before its header says it should."""


def _header_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors buffer (its JSON header); _Truncated when the
    buffer is shorter than its header or data promise, ValueError when it is no header."""
    if len(data) < 8:
        raise _Truncated(f"{len(data)} bytes")
    size = int.from_bytes(data[:8], "little")
    if size <= 0 or size > 100_000_000:
        raise ValueError("bad safetensors header length")
    if size > len(data) - 8:
        raise _Truncated(f"header of {size} bytes, file of {len(data)}")
    header = json.loads(data[8 : 8 + size])
    end = max(
        (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0
    )
    if 8 + size + end > len(data):
        raise _Truncated(f"data ends at byte {8 + size + end}, file has {len(data)}")
    return header.get("__metadata__", {})


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
