"""Where a gallery lives: the ``GalleryStore`` interface and its SQLite implementation.

A store keeps identities and, for each, every enrolled embedding with its source, the time it
was added, the encoder that made it, the SHA-256 of the photo (so a rerun adds only what is
missing) and a small JPEG thumbnail of the aligned face. Searching is not the store's job: it
builds the in-memory faiss ``Gallery`` (``load_gallery``), and a ``generation`` counter, bumped
by every committed change from any process, tells a holder of that index when to rebuild it.

``SqliteStore`` uses the standard library's ``sqlite3`` in WAL mode: every change is one
transaction (``BEGIN IMMEDIATE``, waiting up to ``timeout`` s for another writer), so several
processes enrolling at once lose nothing, and a process killed mid-write leaves every earlier
commit intact. The database (and SQLite's ``-wal``/``-shm`` files, which take its mode) is
created mode 0600: it holds biometric data. Another database can be added by implementing
``GalleryStore``; ``open_store`` picks the implementation from the file's content;
``open_gallery`` opens or creates one.

Erased means erased: deleted rows are overwritten with zeros (``secure_delete``), every removal
checkpoints the WAL into the database and truncates it (the WAL would otherwise keep the old
pages, names, file names and thumbnails, until the next checkpoint), audit entries naming the
removed identity are redacted in the same transaction, and ``close`` checkpoints again.

Names follow ``lrface.search.names``: an identity is found by its ``name_key`` (case, width and
separators folded), and a second name with the same key is refused (``NameConflict``).
The ``audit`` table records who (a key's label) searched, enrolled or removed what and when,
with the request and the answer, never an image.

The schema has a version (``FORMAT_VERSION``); a database of an older version is brought up to
date when opened, one migration step per version (``MIGRATIONS``), in one transaction.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrface.constants import __version__
from lrface.search.gallery import Gallery, GalleryError
from lrface.search.names import name_key

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
"""Version 1 of the schema; ``MIGRATIONS`` bring it to ``FORMAT_VERSION``."""


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Names compared by their key (``lrface.search.names``), photos found by hash across
    identities, and the audit log."""
    db.execute("ALTER TABLE identities ADD COLUMN name_key TEXT")
    rows = db.execute("SELECT id, name FROM identities").fetchall()
    db.executemany(
        "UPDATE identities SET name_key = ? WHERE id = ?", [(name_key(n), i) for i, n in rows]
    )
    # not UNIQUE: a version-1 gallery may hold two names with one key; new ones are refused
    db.execute("CREATE INDEX identities_key ON identities(name_key)")
    db.execute("CREATE INDEX embeddings_sha256 ON embeddings(sha256)")
    db.execute(
        "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, "
        "actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT, request TEXT NOT NULL, "
        "answer TEXT NOT NULL)"
    )


MIGRATIONS = {1: _migrate_1_to_2}
"""Version -> the step that brings a database of that version to the next one."""


@dataclass
class Enrolment:
    """One enrolled face: its unit embedding, the photo it came from (name and SHA-256, when
    known) and a JPEG thumbnail of the aligned face (or None)."""

    embedding: np.ndarray
    source: str
    sha256: str | None = None
    thumbnail: bytes | None = None


@dataclass
class AuditEntry:
    """One audited request: when (epoch s), who (the key's label), the action (search,
    enroll, remove, verify, watch), its target identity (if any), the request and the answer
    (JSON-ready dicts: hashes and sizes of images, never their content)."""

    id: int
    time: float
    actor: str
    action: str
    target: str | None
    request: dict
    answer: dict

    def to_dict(self) -> dict:
        return {**self.__dict__, "time": round(self.time, 3)}


class NameConflict(ValueError):
    """A new name that is the same identity (``name_key``) as one already enrolled under
    another spelling; ``existing`` is that spelling."""

    def __init__(self, name: str, existing: str):
        self.existing = existing
        super().__init__(
            f"{name!r} is the same identity as the enrolled {existing!r} (names that differ "
            "only in case, width or separators are one person); enroll under that name"
        )


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
    def remove(self, name: str, actor: str | None = None) -> int:
        """Delete ``name`` and everything enrolled for it, for good (KeyError if absent), and
        redact the audit entries naming it; with ``actor``, audit the removal itself (the
        identity by its number, not its name) in the same transaction. The generation."""

    @abc.abstractmethod
    def resolve(self, name: str) -> str | None:
        """The enrolled spelling of the identity ``name`` denotes (same ``name_key``), or None."""

    @abc.abstractmethod
    def photo_owners(self, sha256: str) -> set[str]:
        """The identities a photo with this SHA-256 is enrolled for."""

    @abc.abstractmethod
    def audit(
        self, actor: str, action: str, target: str | None, request: dict, answer: dict
    ) -> None:
        """Append one entry to the audit log (not a gallery change: no new generation)."""

    @abc.abstractmethod
    def audit_log(self, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        """The newest ``limit`` audit entries (older than entry id ``before``), newest first."""

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
    def generation(self) -> int:
        """A counter that every committed change (from any process) increases."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __len__(self) -> int:
        return len(self.identities())

    def load_gallery(self) -> Gallery:
        """The faiss-searchable gallery of every identity's template."""
        gallery = Gallery(self.encoder, self.dim, self.encoder_name)
        for name, vectors in self.embeddings():
            gallery.add(name, vectors)
        return gallery

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
            self._upgrade(version)
        elif version != FORMAT_VERSION:
            self._close_quietly()
            raise GalleryError(
                f"{path}: gallery format version {meta.get('format_version')} (written by lrface "
                f"{meta.get('lrface_version')}) is not readable by lrface {__version__}, which "
                f"reads version {FORMAT_VERSION}"
            )
        self.encoder = meta["encoder"]
        self.encoder_name = meta.get("encoder_name", self.encoder)
        self.dim = int(meta["dim"])

    def _upgrade(self, version: int) -> None:
        """Bring a database of an older schema ``version`` up to ``FORMAT_VERSION``, in one
        transaction (a failure leaves it as it was)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            while version < FORMAT_VERSION:
                MIGRATIONS[version](self._db)
                version += 1
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'format_version'", (str(version),)
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            self._close_quietly()
            raise GalleryError(
                f"{self.path}: cannot upgrade the gallery's schema ({exc})"
            ) from None

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
            "format_version": "1",  # SCHEMA; opening it applies MIGRATIONS
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
            for statement in SCHEMA.split(";"):
                db.execute(statement)
            db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            db.execute("COMMIT")
        finally:
            db.close()
        return cls(path)

    @contextlib.contextmanager
    def _write(self, change: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction, bumping the generation when it ``change``s the gallery;
        rolled back on any error."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise GalleryError(f"{self.path}: cannot write the gallery ({exc})") from None
        try:
            yield self._db
            if change:
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
        key = name_key(name)
        with self._write() as db:
            row = db.execute(
                "SELECT id, name FROM identities WHERE name_key = ? ORDER BY name = ? DESC",
                (key, name),
            ).fetchone()
            if row is None:
                ident = db.execute(
                    "INSERT INTO identities (name, created, name_key) VALUES (?, ?, ?)",
                    (name, now, key),
                ).lastrowid
            elif row[1] != name:
                raise NameConflict(name, row[1])
            else:
                ident = row[0]
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO embeddings "
                "(identity_id, vector, source, sha256, encoder, added, thumbnail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(ident, v, s, h, self.encoder, now, t) for v, s, h, t in rows],
            )
            added = db.total_changes - before
            if not db.execute(
                "SELECT 1 FROM embeddings WHERE identity_id = ?", (ident,)
            ).fetchone():
                db.execute("DELETE FROM identities WHERE id = ?", (ident,))
        return added, self._committed

    def remove(self, name: str, actor: str | None = None) -> int:
        with self._write() as db:
            row = db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise KeyError(f"{name!r} is not in the gallery")
            db.execute("DELETE FROM identities WHERE id = ?", row)
            erased = json.dumps(f"[erased identity #{row[0]}]")
            quoted = json.dumps(name)
            db.execute(
                "UPDATE audit SET target = CASE WHEN target = ? THEN ? ELSE target END, "
                "request = replace(request, ?, ?), answer = replace(answer, ?, ?) "
                "WHERE target = ? OR instr(request, ?) OR instr(answer, ?)",
                (name, json.loads(erased), quoted, erased, quoted, erased, name, quoted, quoted),
            )
            if actor is not None:
                db.execute(
                    "INSERT INTO audit (time, actor, action, target, request, answer) "
                    "VALUES (?, ?, 'remove', ?, '{}', '{}')",
                    (time.time(), actor, json.loads(erased)),
                )
        self._checkpoint()
        return self._committed

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it to zero bytes, so that what was
        deleted survives nowhere (secure_delete has zeroed it in the database's pages)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def resolve(self, name: str) -> str | None:
        row = self._db.execute(
            "SELECT name FROM identities WHERE name_key = ? ORDER BY name = ? DESC",
            (name_key(name), name),
        ).fetchone()
        return None if row is None else row[0]

    def photo_owners(self, sha256: str) -> set[str]:
        rows = self._db.execute(
            "SELECT DISTINCT i.name FROM embeddings e JOIN identities i ON e.identity_id = i.id "
            "WHERE e.sha256 = ?",
            (sha256,),
        ).fetchall()
        return {r[0] for r in rows}

    def audit(
        self, actor: str, action: str, target: str | None, request: dict, answer: dict
    ) -> None:
        with self._write(change=False) as db:
            db.execute(
                "INSERT INTO audit (time, actor, action, target, request, answer) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), actor, action, target, json.dumps(request), json.dumps(answer)),
            )

    def audit_log(self, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        rows = self._db.execute(
            "SELECT id, time, actor, action, target, request, answer FROM audit "
            "WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before if before is not None else 2**62, limit),
        ).fetchall()
        return [
            AuditEntry(i, t, a, act, tg, json.loads(rq), json.loads(an))
            for i, t, a, act, tg, rq, an in rows
        ]

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

    def generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Checkpoint and truncate the WAL, then close (idempotent)."""
        with contextlib.suppress(sqlite3.Error):
            self._checkpoint()
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
