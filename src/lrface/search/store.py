"""Where a gallery lives: the ``GalleryStore`` interface and its SQLite implementation.

A store keeps identities and, for each, every enrolled embedding with its source, the time it
was added, the encoder that made it, the SHA-256 of the photo (so a rerun adds only what is
missing) and a small JPEG thumbnail of the aligned face. Searching is not the store's job: it
builds the in-memory faiss ``Gallery`` (``load_gallery``), and a ``generation`` counter, bumped
by every committed change from any process, tells a holder of that index when to rebuild it.

``SqliteStore`` uses the standard library's ``sqlite3`` in WAL mode: every change is one
transaction (``BEGIN IMMEDIATE``, waiting up to ``timeout`` s for another writer), so several
processes enrolling at once lose nothing, and a process killed mid-write leaves every earlier
commit intact. Deleted rows are overwritten with zeros (``secure_delete``). The database (and
SQLite's ``-wal``/``-shm`` files, which take its mode) is created mode 0600: it holds
biometric data. Another database can be added by implementing ``GalleryStore``;
``open_store`` picks the implementation from the file's content; ``open_gallery`` opens or
creates one.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lrface.constants import __version__
from lrface.search.gallery import Gallery, GalleryError

if TYPE_CHECKING:
    from lrface.search.normalize import Normalizer

FORMAT = "lrface-gallery-sqlite"
FORMAT_VERSION = 2
SQLITE_MAGIC = b"SQLite format 3\x00"
SAFETENSORS_SUFFIX = ".safetensors"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT,
    encoder TEXT NOT NULL,
    added REAL NOT NULL,
    thumbnail BLOB,
    UNIQUE (identity_id, sha256)
);
CREATE INDEX embeddings_identity ON embeddings(identity_id);
"""

IDENTITY_STATS = """
CREATE TABLE identity_stats (
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    encoder TEXT NOT NULL,
    stats BLOB NOT NULL,
    bands INTEGER NOT NULL,
    PRIMARY KEY (identity_id, encoder)
)
"""
"""Gallery-side score-normalization statistics of each identity's template, per cohort
(``encoder``: ``Normalizer.stats_key``), ``bands x 4`` float32 (``lrface.search.normalize``).
Computed at enrolment; an identity's rows go when its template changes."""

MIGRATIONS = {1: [IDENTITY_STATS]}
"""``{version: statements}`` that take a database of ``version`` to the next one."""


@dataclass
class Enrolment:
    """One enrolled face: its unit embedding, the photo it came from (name and SHA-256, when
    known) and a JPEG thumbnail of the aligned face (or None)."""

    embedding: np.ndarray
    source: str
    sha256: str | None = None
    thumbnail: bytes | None = None


@dataclass
class IdentityInfo:
    """An identity as listed: name, enrolled photo count, time of first enrolment (epoch s)."""

    name: str
    photos: int
    created: float


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class GalleryStore(abc.ABC):
    """Persistent identities and embeddings of one encoder (``encoder`` key, ``dim``)."""

    path: str
    encoder: str
    encoder_name: str
    dim: int

    @abc.abstractmethod
    def add(self, name: str, enrolments: list[Enrolment]) -> tuple[int, int]:
        """Enroll under ``name`` in one transaction, skipping photos whose SHA-256 is already
        enrolled for it; (number added, generation after the commit)."""

    @abc.abstractmethod
    def remove(self, name: str) -> int:
        """Delete ``name`` and everything enrolled for it (KeyError if absent); generation."""

    @abc.abstractmethod
    def identities(self) -> list[IdentityInfo]:
        """Every identity, by name."""

    @abc.abstractmethod
    def enrolled_hashes(self, name: str) -> set[str]:
        """SHA-256 of the photos enrolled for ``name`` (empty if it is not enrolled)."""

    @abc.abstractmethod
    def thumbnail(self, name: str) -> bytes | None:
        """JPEG thumbnail of ``name``'s first enrolled face that has one (KeyError if absent)."""

    @abc.abstractmethod
    def embeddings(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, ``N x dim`` embeddings) for every identity."""

    @abc.abstractmethod
    def put_identity_stats(self, stats: dict[str, dict[str, np.ndarray]]) -> int:
        """Store gallery-side statistics ``{name: {stats key: bands x 4}}`` in one transaction
        (derived data: the generation is not bumped); the generation."""

    @abc.abstractmethod
    def identity_stats(self) -> dict[str, dict[str, np.ndarray]]:
        """Every stored ``{name: {stats key: bands x 4}}``."""

    @abc.abstractmethod
    def generation(self) -> int:
        """A counter that every committed change (from any process) increases."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __len__(self) -> int:
        return len(self.identities())

    def load_gallery(self, normalizer: Normalizer | None = None) -> Gallery:
        """The faiss-searchable gallery of every identity's template, scoring by
        ``normalizer`` (None: raw cosine) with the statistics stored at enrolment."""
        gallery = Gallery(self.encoder, self.dim, self.encoder_name)
        for name, vectors in self.embeddings():
            gallery.add(name, vectors)
        if normalizer is not None:
            gallery.use_scoring(normalizer, self.identity_stats())
        return gallery

    def update_identity_stats(self, normalizer: Normalizer, names: list[str]) -> None:
        """Compute and store the gallery-side statistics of ``names`` for every cohort of
        ``normalizer`` (what enrolment does once the photos are in)."""
        gallery = self.load_gallery(normalizer)
        self.put_identity_stats({n: gallery.identity_stats(n) for n in names if n in gallery})

    def check_compatible(self, encoder: str, dim: int) -> None:
        """GalleryError unless this store was made by ``encoder`` with ``dim``-d embeddings."""
        Gallery(self.encoder, self.dim, self.encoder_name).check_compatible(encoder, dim, self.path)

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SqliteStore(GalleryStore):
    """A gallery in one SQLite database (WAL mode); see the module docstring."""

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0):
        self.path = str(path)
        if not Path(path).is_file():
            raise GalleryError(f"{path}: no such gallery file")
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
            if "meta" in tables:
                self._db.execute("PRAGMA foreign_keys = ON")
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
                self._db.execute("PRAGMA secure_delete = ON")  # removed faces are zeroed
                meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            else:
                meta = {}
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise GalleryError(f"{path}: truncated or corrupt gallery database ({exc})") from None
        if meta.get("format") != FORMAT:
            self._close_quietly()
            raise GalleryError(f"{path}: an SQLite database, but not an lrface gallery")
        version = int(meta.get("format_version", -1))
        if version in MIGRATIONS:
            version = self._migrate(version)
        if version != FORMAT_VERSION:
            self._close_quietly()
            raise GalleryError(
                f"{path}: gallery format version {meta.get('format_version')} (written by lrface "
                f"{meta.get('lrface_version')}) is not readable by lrface {__version__}, which "
                f"reads version {FORMAT_VERSION}"
            )
        self.encoder = meta["encoder"]
        self.encoder_name = meta.get("encoder_name", self.encoder)
        self.dim = int(meta["dim"])

    def _migrate(self, version: int) -> int:
        """Bring an older database to ``FORMAT_VERSION`` in one transaction per step (its data
        untouched); the version reached. A database another process migrated meanwhile is
        left as it is."""
        while version in MIGRATIONS:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise GalleryError(f"{self.path}: cannot migrate the gallery ({exc})") from None
            try:
                (now,) = self._db.execute(
                    "SELECT value FROM meta WHERE key = 'format_version'"
                ).fetchone()
                if int(now) == version:
                    for statement in MIGRATIONS[version]:
                        self._db.execute(statement)
                    self._db.execute(
                        "UPDATE meta SET value = ? WHERE key = 'format_version'",
                        (str(version + 1),),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            version = max(version + 1, int(now))
        return version

    @classmethod
    def create(
        cls, path: str | os.PathLike, encoder: str, dim: int, encoder_name: str | None = None
    ) -> SqliteStore:
        """A new, empty gallery database (mode 0600); GalleryError if ``path`` exists."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise GalleryError(f"{path}: already exists") from None
        except OSError as exc:
            raise GalleryError(f"{path}: cannot create the gallery ({exc.strerror})") from None
        os.chmod(path, 0o600)  # whatever the umask
        meta = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "lrface_version": __version__,
            "encoder": encoder,
            "encoder_name": encoder_name or encoder,
            "dim": str(dim),
            "generation": "0",
        }
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("BEGIN IMMEDIATE")
            for statement in [*SCHEMA.split(";"), IDENTITY_STATS]:
                db.execute(statement)
            db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            db.execute("COMMIT")
        finally:
            db.close()
        return cls(path)

    @contextlib.contextmanager
    def _write(self, bump: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction that bumps the generation (unless ``bump`` is False: data
        derived from what is stored, which any holder would compute alike); rolled back on
        any error."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise GalleryError(f"{self.path}: cannot write the gallery ({exc})") from None
        try:
            yield self._db
            if bump:
                self._db.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                )
            self._committed = self.generation()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def add(self, name: str, enrolments: list[Enrolment]) -> tuple[int, int]:
        rows = []
        for e in enrolments:
            vector = np.asarray(e.embedding, "<f4").reshape(-1)
            if vector.shape != (self.dim,) or not np.isfinite(vector).all():
                raise ValueError(f"{e.source}: embedding is not a finite {self.dim}-d vector")
            rows.append((vector.tobytes(), e.source, e.sha256, e.thumbnail))
        now = time.time()
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO identities (name, created) VALUES (?, ?)", (name, now)
            )
            (ident,) = db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO embeddings "
                "(identity_id, vector, source, sha256, encoder, added, thumbnail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(ident, v, s, h, self.encoder, now, t) for v, s, h, t in rows],
            )
            added = db.total_changes - before
            if added:  # the template moved: its statistics are recomputed
                db.execute("DELETE FROM identity_stats WHERE identity_id = ?", (ident,))
            if not db.execute(
                "SELECT 1 FROM embeddings WHERE identity_id = ?", (ident,)
            ).fetchone():
                db.execute("DELETE FROM identities WHERE id = ?", (ident,))
        return added, self._committed

    def remove(self, name: str) -> int:
        with self._write() as db:
            if not db.execute("DELETE FROM identities WHERE name = ?", (name,)).rowcount:
                raise KeyError(f"{name!r} is not in the gallery")
        return self._committed

    def identities(self) -> list[IdentityInfo]:
        rows = self._db.execute(
            "SELECT i.name, COUNT(e.id), i.created FROM identities i "
            "LEFT JOIN embeddings e ON e.identity_id = i.id GROUP BY i.id ORDER BY i.name"
        ).fetchall()
        return [IdentityInfo(n, int(c), float(t)) for n, c, t in rows]

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM identities").fetchone()[0])

    def enrolled_hashes(self, name: str) -> set[str]:
        rows = self._db.execute(
            "SELECT e.sha256 FROM embeddings e JOIN identities i ON e.identity_id = i.id "
            "WHERE i.name = ? AND e.sha256 IS NOT NULL",
            (name,),
        ).fetchall()
        return {r[0] for r in rows}

    def thumbnail(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyError(f"{name!r} is not in the gallery")
        thumb = self._db.execute(
            "SELECT thumbnail FROM embeddings WHERE identity_id = ? AND thumbnail IS NOT NULL "
            "ORDER BY id LIMIT 1",
            (row[0],),
        ).fetchone()
        return None if thumb is None else bytes(thumb[0])

    def embeddings(self) -> Iterator[tuple[str, np.ndarray]]:
        # one read transaction, so a concurrent writer cannot show half a change
        self._db.execute("BEGIN")
        try:
            rows = self._db.execute(
                "SELECT i.name, e.vector FROM embeddings e JOIN identities i "
                "ON e.identity_id = i.id ORDER BY i.id, e.id"
            ).fetchall()
        finally:
            self._db.execute("COMMIT")
        by_name: dict[str, list[bytes]] = {}
        for name, blob in rows:
            by_name.setdefault(name, []).append(blob)
        for name, blobs in by_name.items():
            yield name, np.frombuffer(b"".join(blobs), "<f4").reshape(-1, self.dim)

    def put_identity_stats(self, stats: dict[str, dict[str, np.ndarray]]) -> int:
        rows = []
        for name, by_key in stats.items():
            for key, values in by_key.items():
                values = np.asarray(values, "<f4")
                if values.ndim != 2 or values.shape[1] != 4 or not np.isfinite(values).all():
                    raise ValueError(f"{name}, {key}: statistics must be a finite bands x 4 array")
                rows.append((name, key, values.tobytes(), len(values)))
        with self._write(bump=False) as db:
            ids = {}
            for name in stats:
                row = db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise KeyError(f"{name!r} is not in the gallery")
                ids[name] = row[0]
            db.executemany(
                "INSERT OR REPLACE INTO identity_stats (identity_id, encoder, stats, bands) "
                "VALUES (?, ?, ?, ?)",
                [(ids[name], *r) for name, *r in rows],
            )
        return self._committed

    def identity_stats(self) -> dict[str, dict[str, np.ndarray]]:
        rows = self._db.execute(
            "SELECT i.name, s.encoder, s.stats, s.bands FROM identity_stats s "
            "JOIN identities i ON s.identity_id = i.id"
        ).fetchall()
        out: dict[str, dict[str, np.ndarray]] = {}
        for name, key, blob, bands in rows:
            out.setdefault(name, {})[key] = np.frombuffer(blob, "<f4").reshape(int(bands), 4)
        return out

    def generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()

    def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()


def open_store(path: str | os.PathLike) -> GalleryStore:
    """Open an existing gallery by what the file holds; GalleryError naming the file when it
    is missing, of the older single-file format (with how to convert it), or not a gallery."""
    path = Path(path)
    if path.is_dir():
        raise GalleryError(f"{path}: is a directory, not a gallery file")
    if not path.is_file():
        raise GalleryError(f"{path}: no such gallery file")
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        return SqliteStore(path)
    if path.suffix == SAFETENSORS_SUFFIX:
        Gallery.load(path)  # a damaged file is named as such
        raise GalleryError(
            f"{path}: a gallery of the older single-file format; convert it once with "
            f"'lrface gallery migrate {path} {path.with_suffix('.db')}'"
        )
    if not head:
        raise GalleryError(f"{path}: empty file, not a gallery (truncated?)")
    raise GalleryError(f"{path}: not an lrface gallery (neither SQLite nor safetensors)")


def open_gallery(
    target: str | os.PathLike,
    encoder: str | None = None,
    dim: int | None = None,
    encoder_name: str | None = None,
) -> GalleryStore:
    """The one way to open a gallery (CLI, service, ``lrface.open_gallery``): the existing one
    at ``target`` (``open_store``), or, when ``encoder`` and ``dim`` are given and nothing is
    there yet, a new SQLite gallery for them. Given ``encoder``, an existing gallery made by
    another encoder is refused. GalleryError naming ``target`` when it cannot be used."""
    path = Path(target)
    if encoder is None or dim is None or path.exists() or path.is_symlink():
        store = open_store(path)
        if encoder is not None:
            try:
                store.check_compatible(encoder, dim if dim is not None else store.dim)
            except GalleryError:
                store.close()
                raise
        return store
    return SqliteStore.create(path, encoder, dim, encoder_name)


def migrate(old: str | os.PathLike, new: str | os.PathLike) -> tuple[int, int]:
    """Copy a single-file (safetensors) gallery into a new SQLite one; (identities, photos).

    Source photos that still exist are hashed, so a later enroll of the same folder skips them.
    """
    gallery = Gallery.load(old)
    store = SqliteStore.create(new, gallery.encoder, gallery.dim, gallery.encoder_name)
    photos = 0
    try:
        for name in gallery.names:
            ident = gallery.identity(name)
            enrolments = [
                Enrolment(e, s, _hash_if_file(s))
                for e, s in zip(ident.embeddings, ident.sources, strict=True)
            ]
            photos += store.add(name, enrolments)[0]
        return len(gallery), photos
    except BaseException:
        store.close()
        Path(new).unlink(missing_ok=True)
        raise
    finally:
        store.close()


def _hash_if_file(source: str) -> str | None:
    try:
        return file_sha256(Path(source).read_bytes()) if source else None
    except OSError:
        return None
