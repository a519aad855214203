"""Where a gallery lives: the ``GalleryStore`` interface, the SQL both databases share
(``SqlStore``) and its SQLite implementation; PostgreSQL is ``lrface.search.postgres``.

A store keeps identities and, for each, every enrolled embedding with its source, the time it
was added, the encoder that made it, the SHA-256 of the photo (so a rerun adds only what is
missing) and a small JPEG thumbnail of the aligned face. Searching is not the store's job: it
builds the in-memory faiss ``Gallery`` (``load_gallery``; ``lrface.search.sync`` keeps one in
step), and a ``generation`` counter, bumped by every committed change from any process, tells
a holder of that index when to update it; the ``changes`` table says which identities each
generation touched (by row id, no personal data), so a holder updates only those. The store
also holds the watch event log (``add_event``/``events``): one row per finished track, and the
gallery-side score-normalization statistics of each identity (``identity_stats``), derived
from its template at enrolment and deleted with it.

Every change is one transaction that first bumps the generation, which locks out every other
writer until it commits (SQLite: ``BEGIN IMMEDIATE``, waiting up to ``timeout`` s;
PostgreSQL: the row lock), so several processes enrolling at once lose nothing, and a process
killed mid-write leaves every earlier commit intact. The schema has a version (``meta``
key ``format_version``); an older database is brought up to date when opened, one step per
version (``MIGRATIONS``), in one transaction.

Names follow ``lrface.search.names``: an identity is found by its ``name_key`` (case, width and
separators folded), and a second name with the same key is refused (``NameConflict``).
The ``audit`` table records who (a key's label) searched, enrolled or removed what and when,
with the request and the answer, never an image; ``audit_names`` says which entries may name
whom, so that a removal finds the entries naming a person without reading the whole log.

Erased means erased: a removal deletes the rows and, in the same transaction, redacts the audit
entries naming the identity (found through ``audit_names``, whose rows for the name go too);
then the implementation makes sure the bytes are gone from its files. ``SqliteStore`` (the
standard library's ``sqlite3`` in WAL mode) overwrites deleted rows with zeros
(``secure_delete``) and checkpoints and truncates the WAL after every removal and at ``close``
(the WAL would otherwise keep the old pages until the next checkpoint). The database (and
SQLite's ``-wal``/``-shm`` files, which take its mode) is created mode 0600: it holds
biometric data. ``open_store`` takes a file path or a ``postgresql://`` URL and picks the
implementation.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.constants import __version__
from lrface.search.gallery import Gallery, GalleryError
from lrface.search.names import name_key

if TYPE_CHECKING:
    from lrface.search.normalize import Normalizer

FORMAT = "lrface-gallery-sqlite"
FORMAT_VERSION = 5
SQLITE_MAGIC = b"SQLite format 3\x00"
SAFETENSORS_SUFFIX = ".safetensors"
DATABASE_URL_PREFIXES = ("postgresql://", "postgres://")
CHANGES_KEPT = 100_000
"""Generations the ``changes`` table remembers; a holder further behind reloads everything."""

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

CHANGES = "CREATE TABLE changes (generation INTEGER PRIMARY KEY, identity_id INTEGER NOT NULL)"
"""Which identity each generation touched (by row id: no personal data), for holders of an
index to update just that (``changes_since``); the last ``CHANGES_KEPT`` generations."""

EVENTS = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    run TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    time REAL NOT NULL,
    identity TEXT,
    score REAL,
    threshold REAL,
    details TEXT NOT NULL,
    thumbnail BLOB,
    UNIQUE (camera, run, track_id)
)
"""
"""The watch event log: one row per finished track (``EventRecord``)."""

AUDIT = """
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    request TEXT NOT NULL,
    answer TEXT NOT NULL
)
"""
"""Who did what: one row per audited request (``AuditEntry``)."""

AUDIT_NAMES = """
CREATE TABLE audit_names (
    name TEXT NOT NULL,
    audit_id INTEGER NOT NULL,
    PRIMARY KEY (name, audit_id)
) WITHOUT ROWID
"""
"""Which audit entry may name whom: a removal redacts just the entries listed under the name
instead of reading every entry, and deletes the name's rows here. Listed for an entry: its
target, and every string of its request and its answer (``value_strings``: values, keys, the
text after a quote) that is the name of an identity enrolled when the entry is written,
checked in its write transaction (``_enrolled``). Keys such as ``"probe"`` or ``"score"``,
photo hashes and other strings get no rows, which keeps the index small
(benchmarks/audit_removal.py, docs/service.md).

Why that is enough: every request and answer is built by the system from what it made, never
from text a user typed. The callers of ``audit``: ``/api/search`` logs ``{"probe": {"sha256",
"bytes"}, "k"}``, ``/api/verify`` ``{"a": ..., "b": ...}`` (the same photo reference),
``/api/watch`` ``{"video": {"sha256", "bytes"}, "stride"}``, ``/api/identities/{name}/photos``
``{"photos": [photo references]}`` and ``lrface.enrolment`` (CLI, Python API)
``{"photos": count}``; a photo is referenced by hash and size, not by its file name, which
may name a person (``Upload.audit_ref``); ``remove`` logs ``{}``. The only user-typed string,
an enrolment's name, is the target, listed whatever it is. The answers' names are identities
the gallery returned, so enrolled when it searched. A caller that logs a user-typed string
must pass it as the target (tests/service/test_hardening.py checks the routes' requests).

The rule's one limit: a string naming someone not enrolled when the entry is written. That is
either the target (listed anyway) or an identity removed between the search and its audit, a
race the whole-log scan before the index had as well: the removal's redaction ran before the
entry existed. It happens: the service searches its in-memory index, then writes the audit
entry in a transaction of its own, so a removal (from another request, another process or
``lrface gallery remove``) can commit between the two; for ``/api/watch`` the window is the
whole video. One difference from the scan: if the same name is enrolled again and then
removed again, the scan would redact such an entry at that second removal; the index does
not list it. On PostgreSQL the check share-locks the rows it finds, so no removal commits
between the check and the entry's commit: a removal that starts after the check waits for the
entry and then redacts it, and a check that starts after a removal's delete waits for that
removal and then finds the name gone (the race above). SQLite's write lock serializes the
two anyway.

``WITHOUT ROWID``: SQLite keeps the rows in their key's b-tree alone, not twice."""

AUDIT_BATCH = 1000
"""Audit entries read at a time when a migration indexes an existing log."""

NAME_CHECK_BATCH = 500
"""Strings checked against the enrolled names per query (SQLite builds before 3.32 take at
most 999 parameters)."""

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
Computed at enrolment; an identity's rows go when its template changes or it is removed."""


def _fill_name_keys(db: Any) -> None:
    """Give every existing identity its ``name_key`` (``lrface.search.names``)."""
    rows = db.execute("SELECT id, name FROM identities").fetchall()
    db.executemany(
        "UPDATE identities SET name_key = ? WHERE id = ?", [(name_key(n), i) for i, n in rows]
    )


def json_strings(text: str) -> set[str]:
    """``value_strings`` of the JSON text ``text`` (an entry already logged)."""
    return value_strings(json.loads(text))


def value_strings(value: Any) -> set[str]:
    """Every string of ``value`` (JSON-shaped) that ``remove`` would redact from its JSON text
    if it were a name: each string, object keys too, at any depth, with what follows each
    quote inside one (the redaction rewrites the JSON-quoted name wherever it occurs, and
    ``"x\\"Ann"`` holds ``"Ann"``). Not a string holding NUL: no name may
    (``lrface.search.names``), and PostgreSQL's text refuses it."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            parts = value.split('"')
            found.update('"'.join(parts[i:]) for i in range(len(parts)))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(value)
    return {s for s in found if "\x00" not in s}


def _enrolled(db: Any, names: set[str]) -> set[str]:
    """Those of ``names`` that are enrolled identities, in ``db``'s write transaction,
    ``NAME_CHECK_BATCH`` to a query. PostgreSQL also share-locks their rows until the commit
    (``key_share``), so that a removal of one of them running meanwhile waits for the entry
    and its index rows and then redacts them; SQLite's write lock already keeps removals out."""
    ordered, found = sorted(names), set()
    for start in range(0, len(ordered), NAME_CHECK_BATCH):
        chunk = ordered[start : start + NAME_CHECK_BATCH]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT name FROM identities WHERE name IN ({marks}){db.key_share}"
        found.update(name for (name,) in db.execute(query, chunk).fetchall())
    return found


def _insert_audit(
    db: Any, actor: str, action: str, target: str | None, request: dict, answer: dict
) -> None:
    """Append one audit entry and its ``audit_names`` rows, in the caller's transaction."""
    [(audit_id,)] = db.execute(
        "INSERT INTO audit (time, actor, action, target, request, answer) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (time.time(), actor, action, target, json.dumps(request), json.dumps(answer)),
    ).fetchall()
    _index_audit(db, [(audit_id, target, value_strings(request) | value_strings(answer))])


def _index_audit(db: Any, entries: list[tuple[int, str | None, set[str]]]) -> None:
    """The ``audit_names`` rows of audit entries (id, target, the strings of its request and
    answer): the target, and those strings that are enrolled names now (``AUDIT_NAMES`` says
    why that is enough)."""
    names = _enrolled(db, set().union(*(strings for _, _, strings in entries)))
    rows = []
    for audit_id, target, strings in entries:
        listed = strings & names
        if target and "\x00" not in target:
            listed.add(target)
        rows += [(name, audit_id) for name in listed]
    db.executemany("INSERT INTO audit_names (name, audit_id) VALUES (?, ?)", rows)


def _fill_audit_names(db: Any) -> None:
    """Index the audit entries already logged (``audit_names``), ``AUDIT_BATCH`` at a time,
    by the rule of new entries, the names enrolled now standing for those enrolled when each
    was written: a name in an older request or answer whose identity is gone was redacted by
    its removal (the scan read every entry then), unless that entry was written in the race
    ``AUDIT_NAMES`` describes, after the removal. Older requests hold no user-typed string
    either: no version of the service or the CLI logged one besides the target."""
    last = 0
    while rows := db.execute(
        "SELECT id, target, request, answer FROM audit WHERE id > ? ORDER BY id LIMIT ?",
        (last, AUDIT_BATCH),
    ).fetchall():
        _index_audit(db, [(i, t, json_strings(rq) | json_strings(an)) for i, t, rq, an in rows])
        last = rows[-1][0]


Migration = str | Callable[[Any], None]
"""One step of a migration: an SQL statement (in SQLite's types; PostgreSQL translates them)
or a function of the open connection that rewrites data (nothing to do on a new database)."""

MIGRATIONS: dict[int, list[Migration]] = {
    1: [CHANGES, EVENTS, "CREATE INDEX events_time ON events(time)"],
    2: [
        "ALTER TABLE identities ADD COLUMN name_key TEXT",
        _fill_name_keys,
        # not UNIQUE: an older gallery may hold two names with one key; new ones are refused
        "CREATE INDEX identities_key ON identities(name_key)",
        "CREATE INDEX embeddings_sha256 ON embeddings(sha256)",
        AUDIT,
    ],
    3: [IDENTITY_STATS],
    4: [AUDIT_NAMES, _fill_audit_names],
}
"""``{version: steps}`` that take a database of ``version`` to the next one."""


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


@dataclass
class EventRecord:
    """One finished track as the event log keeps it: which camera (and which run of its
    worker: a worker restarted on the same file writes the same ``run`` and so logs each
    track once), when (epoch s), the identity or None for unknown, its score and the
    threshold it was judged by, the full event (``details``, ``TrackEvent.to_dict``) and a
    JPEG of the track's best face. ``id`` is the log's own, increasing with each insert."""

    camera: str
    run: str
    track_id: int
    time: float
    identity: str | None
    score: float | None
    threshold: float | None
    details: dict = field(default_factory=dict)
    thumbnail: bytes | None = None
    id: int | None = None
    has_thumbnail: bool = False
    """Listed events come without their JPEG (``event_thumbnail``); this says one is kept."""

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "camera": self.camera,
            "run": self.run,
            "track_id": self.track_id,
            "time": round(self.time, 3),
            "identity": self.identity,
            "score": self.score,
            "threshold": self.threshold,
            "thumbnail": self.has_thumbnail or self.thumbnail is not None,
            "details": self.details,
        }


@dataclass
class EventQuery:
    """Which events to list: by camera, identity (``"unknown"`` for the unknown ones), time
    window (epoch s, inclusive), and either the newest ``limit`` or, with ``after_id``, the
    ones logged after that id, oldest first (what a live feed asks)."""

    camera: str | None = None
    identity: str | None = None
    since: float | None = None
    until: float | None = None
    after_id: int | None = None
    limit: int = 100


def new_schema() -> list[str]:
    """The statements that create the tables of a new gallery at ``FORMAT_VERSION`` (the
    migrations' data steps have nothing to rewrite there)."""
    steps = [step for version in sorted(MIGRATIONS) for step in MIGRATIONS[version]]
    return [*filter(str.strip, SCHEMA.split(";")), *(s for s in steps if isinstance(s, str))]


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def redacted(target: str | os.PathLike) -> str:
    """A gallery target as messages and logs may show it: a URL without its password."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", str(target))


def is_database_url(target: str | os.PathLike) -> bool:
    """Whether a gallery target names a PostgreSQL database rather than a file."""
    return str(target).startswith(DATABASE_URL_PREFIXES)


class GalleryStore(abc.ABC):
    """Persistent identities and embeddings of one encoder (``encoder`` key, ``dim``), and the
    watch event log."""

    path: str
    encoder: str
    encoder_name: str
    dim: int

    @abc.abstractmethod
    def add(
        self, name: str, enrolments: list[Enrolment], created: float | None = None
    ) -> tuple[int, int]:
        """Enroll under ``name`` in one transaction, skipping photos whose SHA-256 is already
        enrolled for it; (number added, generation after the commit). ``created``: the time
        to record (now by default; a migration keeps the original)."""

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
    def identity_rows(self, ids: list[int] | None = None) -> Iterator[tuple[int, str, np.ndarray]]:
        """(row id, name, ``N x dim`` embeddings) of the identities ``ids`` that still exist,
        or of every identity, read in one transaction."""

    @abc.abstractmethod
    def identity_ids(self, names: list[str]) -> list[int]:
        """The row ids of those of ``names`` that are enrolled."""

    @abc.abstractmethod
    def records(self) -> Iterator[tuple[str, float, list[Enrolment]]]:
        """(name, created, every enrolment with its thumbnail) per identity: a full copy."""

    @abc.abstractmethod
    def put_identity_stats(self, stats: dict[str, dict[str, np.ndarray]]) -> None:
        """Store gallery-side statistics ``{name: {stats key: bands x 4}}`` in one transaction
        (derived data, which any holder would compute alike: the generation is not bumped);
        KeyError for a name not enrolled."""

    @abc.abstractmethod
    def identity_stats(self) -> dict[str, dict[str, np.ndarray]]:
        """Every stored ``{name: {stats key: bands x 4}}``."""

    @abc.abstractmethod
    def generation(self) -> int:
        """A counter that every committed change (from any process) increases."""

    @abc.abstractmethod
    def changes_since(self, generation: int) -> tuple[int, list[int]] | None:
        """(latest generation, row ids of the identities changed after ``generation``, in
        commit order, each once), or None when the change log no longer reaches back there."""

    @abc.abstractmethod
    def add_event(self, event: EventRecord) -> int | None:
        """Log a finished track; its id, or None if that (camera, run, track) is logged."""

    @abc.abstractmethod
    def events(self, query: EventQuery) -> list[EventRecord]:
        """Events matching ``query``, without thumbnails."""

    @abc.abstractmethod
    def event_thumbnail(self, event_id: int) -> bytes | None:
        """The JPEG of event ``event_id`` (KeyError if there is no such event)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def watch_changes(self, changed: Callable[[], None], stop: threading.Event) -> bool:
        """Call ``changed`` whenever another process commits a change, until ``stop`` is set;
        False at once where the database cannot push changes (SQLite: poll ``generation``)."""
        return False

    def __len__(self) -> int:
        return len(self.identities())

    def embeddings(self) -> Iterator[tuple[str, np.ndarray]]:
        """(name, ``N x dim`` embeddings) for every identity."""
        for _, name, vectors in self.identity_rows():
            yield name, vectors

    def load_gallery(self, normalizer: Normalizer | None = None) -> Gallery:
        """The faiss-searchable gallery of every identity's template (exact or approximate
        search by its size: ``Gallery.choose_index``), scoring by ``normalizer`` (None: raw
        cosine) with the statistics stored at enrolment."""
        gallery = Gallery(self.encoder, self.dim, self.encoder_name)
        for name, vectors in self.embeddings():
            gallery.add(name, vectors)
        gallery.choose_index()
        if normalizer is not None:
            gallery.use_scoring(normalizer, self.identity_stats())
        return gallery

    def update_identity_stats(self, normalizer: Normalizer, names: list[str]) -> None:
        """Compute and store the gallery-side statistics of ``names`` for every cohort of
        ``normalizer`` (what enrolment does once the photos are in); only those identities
        are read: a template's statistics depend on it and the cohort alone."""
        gallery = Gallery(self.encoder, self.dim, self.encoder_name)
        for _, name, vectors in self.identity_rows(self.identity_ids(names)):
            gallery.add(name, vectors)
        gallery.use_scoring(normalizer)
        self.put_identity_stats({n: gallery.identity_stats(n) for n in names if n in gallery})

    def check_compatible(self, encoder: str, dim: int) -> None:
        """GalleryError unless this store was made by ``encoder`` with ``dim``-d embeddings."""
        Gallery(self.encoder, self.dim, self.encoder_name).check_compatible(encoder, dim, self.path)

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Change:
    """An open write transaction: its connection, the generation it commits, and the row id
    of the identity it touches (recorded in ``changes``)."""

    db: Any
    generation: int
    identity: int | None = None


class SqlStore(GalleryStore):
    """Everything both databases run alike, written once in SQL with ``?`` placeholders; a
    subclass opens transactions (``_transaction``), creates the schema and may act before a
    change commits (``_before_commit``: PostgreSQL notifies) and after (``_committed``: it
    rewrites the tables after a removal)."""

    migrations: dict[int, list[Migration]] = MIGRATIONS

    @abc.abstractmethod
    def _transaction(self, write: bool) -> contextlib.AbstractContextManager[Any]:
        """A connection inside one transaction (exclusive for writers), committed on a normal
        exit and rolled back on an exception; its ``execute`` takes ``?`` placeholders."""

    def _before_commit(self, change: Change) -> None:
        """Called inside a write transaction just before its commit; nothing by default."""

    def _committed(self, change: Change, removal: bool) -> None:
        """Called after a change commits; nothing to do by default."""

    def _lock_schema(self, db: Any) -> None:
        """Keep two processes from migrating at once (SQLite's write lock already does)."""

    def _read_meta(self) -> dict[str, str]:
        """The meta table, after bringing an older format up to date (``migrations``, in one
        transaction; a database another process migrated meanwhile is left as it is)."""
        with self._transaction(write=False) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if int(meta.get("format_version", -1)) in self.migrations:
            with self._transaction(write=True) as db:
                self._lock_schema(db)
                (version,) = db.execute(
                    "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'format_version'"
                ).fetchone()
                while version in self.migrations:
                    for step in self.migrations[version]:
                        step(db) if callable(step) else db.execute(step)
                    version += 1
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'format_version'", (str(version),)
                )
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return meta

    @staticmethod
    def initial_meta(encoder: str, dim: int, encoder_name: str | None) -> dict[str, str]:
        """The meta rows of a new, empty gallery of the latest schema."""
        return {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "lrface_version": __version__,
            "encoder": encoder,
            "encoder_name": encoder_name or encoder,
            "dim": str(dim),
            "generation": "0",
        }

    def _check_meta(self, meta: dict[str, str], kind: str) -> None:
        """Take encoder and dim from ``meta``; GalleryError naming the store if unreadable."""
        if meta.get("format") != FORMAT:
            raise GalleryError(f"{self.path}: {kind}, but not an lrface gallery")
        if int(meta.get("format_version", -1)) != FORMAT_VERSION:
            raise GalleryError(
                f"{self.path}: gallery format version {meta.get('format_version')} (written by "
                f"lrface {meta.get('lrface_version')}) is not readable by lrface {__version__}, "
                f"which reads version {FORMAT_VERSION}"
            )
        self.encoder = meta["encoder"]
        self.encoder_name = meta.get("encoder_name", self.encoder)
        self.dim = int(meta["dim"])

    @contextlib.contextmanager
    def _write(self) -> Iterator[Change]:
        """One write transaction: bumps the generation first (which locks out other writers
        until the commit) and records the identity the caller touched."""
        with self._transaction(write=True) as db:
            db.execute(
                "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) "
                "WHERE key = 'generation'"
            )
            (generation,) = db.execute(
                "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'generation'"
            ).fetchone()
            change = Change(db, int(generation))
            yield change
            db.execute(
                "INSERT INTO changes (generation, identity_id) VALUES (?, ?)",
                (change.generation, change.identity),
            )
            db.execute(
                "DELETE FROM changes WHERE generation <= ?", (change.generation - CHANGES_KEPT,)
            )
            self._before_commit(change)

    def add(
        self, name: str, enrolments: list[Enrolment], created: float | None = None
    ) -> tuple[int, int]:
        rows = []
        for e in enrolments:
            vector = np.asarray(e.embedding, "<f4").reshape(-1)
            if vector.shape != (self.dim,) or not np.isfinite(vector).all():
                raise ValueError(f"{e.source}: embedding is not a finite {self.dim}-d vector")
            rows.append((vector.tobytes(), e.source, e.sha256, e.thumbnail))
        now = time.time() if created is None else created
        key = name_key(name)
        with self._write() as change:  # writers wait for each other: no race on the name
            db = change.db
            row = db.execute(
                "SELECT id, name FROM identities WHERE name_key = ? ORDER BY name = ? DESC",
                (key, name),
            ).fetchone()
            if row is not None and row[1] != name:
                raise NameConflict(name, row[1])
            if row is None:
                db.execute(
                    "INSERT INTO identities (name, created, name_key) VALUES (?, ?, ?)",
                    (name, now, key),
                )
                row = db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            ident = row[0]
            count = "SELECT COUNT(*) FROM embeddings WHERE identity_id = ?"
            (before,) = db.execute(count, (ident,)).fetchone()
            db.executemany(
                "INSERT INTO embeddings "
                "(identity_id, vector, source, sha256, encoder, added, thumbnail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(ident, v, s, h, self.encoder, now, t) for v, s, h, t in rows],
            )
            (after,) = db.execute(count, (ident,)).fetchone()
            if after > before:  # the template moved: its statistics are computed again
                db.execute("DELETE FROM identity_stats WHERE identity_id = ?", (ident,))
            if not after:
                db.execute("DELETE FROM identities WHERE id = ?", (ident,))
            change.identity = ident
        self._committed(change, removal=False)
        return int(after - before), change.generation

    def remove(self, name: str, actor: str | None = None) -> int:
        with self._write() as change:
            db = change.db
            row = db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise KeyError(f"{name!r} is not in the gallery")
            db.execute("DELETE FROM identities WHERE id = ?", (row[0],))
            change.identity = row[0]
            erased = f"[erased identity #{row[0]}]"
            quoted, quoted_erased = json.dumps(name), json.dumps(erased)
            db.execute(  # the entries holding the name as a JSON string, rewritten without
                "UPDATE audit SET target = CASE WHEN target = ? THEN ? ELSE target END, "
                "request = replace(request, ?, ?), answer = replace(answer, ?, ?) "
                "WHERE id IN (SELECT audit_id FROM audit_names WHERE name = ?)",
                (name, erased, quoted, quoted_erased, quoted, quoted_erased, name),
            )
            db.execute("DELETE FROM audit_names WHERE name = ?", (name,))
            if actor is not None:
                _insert_audit(db, actor, "remove", erased, {}, {})
        self._committed(change, removal=True)
        return change.generation

    def resolve(self, name: str) -> str | None:
        rows = self._rows(
            "SELECT name FROM identities WHERE name_key = ? ORDER BY name = ? DESC LIMIT 1",
            (name_key(name), name),
        )
        return rows[0][0] if rows else None

    def photo_owners(self, sha256: str) -> set[str]:
        rows = self._rows(
            "SELECT DISTINCT i.name FROM embeddings e JOIN identities i ON e.identity_id = i.id "
            "WHERE e.sha256 = ?",
            (sha256,),
        )
        return {r[0] for r in rows}

    def audit(
        self, actor: str, action: str, target: str | None, request: dict, answer: dict
    ) -> None:
        with self._transaction(write=True) as db:
            _insert_audit(db, actor, action, target, request, answer)

    def audit_log(self, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
        rows = self._rows(
            "SELECT id, time, actor, action, target, request, answer FROM audit "
            "WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before if before is not None else 2**62, int(limit)),
        )
        return [
            AuditEntry(int(i), float(t), a, act, tg, json.loads(rq), json.loads(an))
            for i, t, a, act, tg, rq, an in rows
        ]

    def _rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """Every row one read query returns."""
        with self._transaction(write=False) as db:
            return db.execute(sql, params).fetchall()

    def identities(self) -> list[IdentityInfo]:
        rows = self._rows(
            "SELECT i.name, COUNT(e.id), i.created FROM identities i "
            "LEFT JOIN embeddings e ON e.identity_id = i.id "
            "GROUP BY i.id, i.name, i.created ORDER BY i.name"
        )
        return [IdentityInfo(n, int(c), float(t)) for n, c, t in rows]

    def __len__(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM identities")[0][0])

    def enrolled_hashes(self, name: str) -> set[str]:
        rows = self._rows(
            "SELECT e.sha256 FROM embeddings e JOIN identities i ON e.identity_id = i.id "
            "WHERE i.name = ? AND e.sha256 IS NOT NULL",
            (name,),
        )
        return {r[0] for r in rows}

    def thumbnail(self, name: str) -> bytes | None:
        with self._transaction(write=False) as db:
            row = db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise KeyError(f"{name!r} is not in the gallery")
            thumb = db.execute(
                "SELECT thumbnail FROM embeddings WHERE identity_id = ? "
                "AND thumbnail IS NOT NULL ORDER BY id LIMIT 1",
                (row[0],),
            ).fetchone()
        return None if thumb is None else bytes(thumb[0])

    def identity_rows(self, ids: list[int] | None = None) -> Iterator[tuple[int, str, np.ndarray]]:
        query = (
            "SELECT i.id, i.name, e.vector FROM embeddings e JOIN identities i "
            "ON e.identity_id = i.id"
        )
        with self._transaction(write=False) as db:  # a concurrent writer shows all or nothing
            if ids is None:
                rows = db.execute(query + " ORDER BY i.id, e.id").fetchall()
            else:
                rows = []
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ", ".join("?" * len(chunk))
                    rows += db.execute(
                        f"{query} WHERE i.id IN ({marks}) ORDER BY i.id, e.id", chunk
                    ).fetchall()
        by_id: dict[int, tuple[str, list[bytes]]] = {}
        for ident, name, blob in rows:
            by_id.setdefault(ident, (name, []))[1].append(bytes(blob))
        for ident, (name, blobs) in by_id.items():
            yield ident, name, np.frombuffer(b"".join(blobs), "<f4").reshape(-1, self.dim)

    def identity_ids(self, names: list[str]) -> list[int]:
        ids = []
        for start in range(0, len(names), 500):
            chunk = list(names[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            rows = self._rows(f"SELECT id FROM identities WHERE name IN ({marks})", chunk)
            ids += [int(ident) for (ident,) in rows]
        return ids

    def records(self) -> Iterator[tuple[str, float, list[Enrolment]]]:
        people = self._rows("SELECT id, name, created FROM identities ORDER BY id")
        for ident, name, created in people:
            rows = self._rows(
                "SELECT vector, source, sha256, thumbnail FROM embeddings "
                "WHERE identity_id = ? ORDER BY id",
                (ident,),
            )
            enrolments = [
                Enrolment(np.frombuffer(bytes(v), "<f4"), s, h, None if t is None else bytes(t))
                for v, s, h, t in rows
            ]
            if enrolments:
                yield name, float(created), enrolments

    def put_identity_stats(self, stats: dict[str, dict[str, np.ndarray]]) -> None:
        rows = []
        for name, by_key in stats.items():
            for key, values in by_key.items():
                values = np.asarray(values, "<f4")
                if values.ndim != 2 or values.shape[1] != 4 or not np.isfinite(values).all():
                    raise ValueError(f"{name}, {key}: statistics must be a finite bands x 4 array")
                rows.append((name, key, values.tobytes(), len(values)))
        with self._transaction(write=True) as db:
            ids = {}
            for name in stats:
                row = db.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise KeyError(f"{name!r} is not in the gallery")
                ids[name] = row[0]
            db.executemany(
                "INSERT INTO identity_stats (identity_id, encoder, stats, bands) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (identity_id, encoder) "
                "DO UPDATE SET stats = excluded.stats, bands = excluded.bands",
                [(ids[name], *r) for name, *r in rows],
            )

    def identity_stats(self) -> dict[str, dict[str, np.ndarray]]:
        rows = self._rows(
            "SELECT i.name, s.encoder, s.stats, s.bands FROM identity_stats s "
            "JOIN identities i ON s.identity_id = i.id"
        )
        out: dict[str, dict[str, np.ndarray]] = {}
        for name, key, blob, bands in rows:
            out.setdefault(name, {})[key] = np.frombuffer(bytes(blob), "<f4").reshape(int(bands), 4)
        return out

    def generation(self) -> int:
        return int(self._rows("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    def changes_since(self, generation: int) -> tuple[int, list[int]] | None:
        with self._transaction(write=False) as db:
            (current,) = db.execute(
                "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'generation'"
            ).fetchone()
            rows = db.execute(
                "SELECT generation, identity_id FROM changes WHERE generation > ? "
                "ORDER BY generation",
                (generation,),
            ).fetchall()
        generations = [int(g) for g, _ in rows]
        last = generations[-1] if generations else generation
        if generations != list(range(generation + 1, last + 1)) or last < current:
            return None  # pruned, written before the log existed, or a database replaced
        return last, list(dict.fromkeys(int(ident) for _, ident in rows))

    def add_event(self, event: EventRecord) -> int | None:
        with self._transaction(write=True) as db:
            db.execute(
                "INSERT INTO events (camera, run, track_id, time, identity, score, threshold, "
                "details, thumbnail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    event.camera,
                    event.run,
                    event.track_id,
                    event.time,
                    event.identity,
                    event.score,
                    event.threshold,
                    json.dumps(event.details),
                    event.thumbnail,
                ),
            )
            inserted = db.rowcount_of_last()
            row = db.execute(
                "SELECT id FROM events WHERE camera = ? AND run = ? AND track_id = ?",
                (event.camera, event.run, event.track_id),
            ).fetchone()
        event.id = int(row[0])
        return event.id if inserted else None

    def events(self, query: EventQuery) -> list[EventRecord]:
        where, params = [], []
        for column, value in (("camera", query.camera), ("identity", query.identity)):
            if value == "unknown" and column == "identity":
                where.append("identity IS NULL")
            elif value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for clause, value in (
            ("time >= ?", query.since),
            ("time <= ?", query.until),
            ("id > ?", query.after_id),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        order = "id" if query.after_id is not None else "id DESC"
        sql = (
            "SELECT id, camera, run, track_id, time, identity, score, threshold, details, "
            "thumbnail IS NOT NULL FROM events"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY {order} LIMIT ?"
        )
        rows = self._rows(sql, (*params, int(query.limit)))
        return [
            EventRecord(
                camera, run, int(track), float(t), ident, score, threshold, json.loads(details),
                None, int(event_id), bool(has_thumb),
            )
            for event_id, camera, run, track, t, ident, score, threshold, details, has_thumb
            in rows
        ]  # fmt: skip

    def event_thumbnail(self, event_id: int) -> bytes | None:
        rows = self._rows("SELECT thumbnail FROM events WHERE id = ?", (event_id,))
        if not rows:
            raise KeyError(f"no event {event_id}")
        return None if rows[0][0] is None else bytes(rows[0][0])


class SqliteStore(SqlStore):
    """A gallery in one SQLite database (WAL mode); see the module docstring."""

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0):
        self.path = str(path)
        self._lock = threading.RLock()  # one connection, shared by a server's threads
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
                if meta.get("format") == FORMAT:
                    meta = self._read_meta()
            else:
                meta = {}
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise GalleryError(f"{path}: truncated or corrupt gallery database ({exc})") from None
        try:
            self._check_meta(meta, "an SQLite database")
        except GalleryError:
            self._close_quietly()
            raise

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
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("BEGIN IMMEDIATE")
            for statement in new_schema():
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                cls.initial_meta(encoder, dim, encoder_name).items(),
            )
            db.execute("COMMIT")
        finally:
            db.close()
        return cls(path)

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[_SqliteConnection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise GalleryError(f"{self.path}: cannot write the gallery ({exc})") from None
            try:
                yield _SqliteConnection(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _committed(self, change: Change, removal: bool) -> None:
        if removal:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it to zero bytes, so that what was
        deleted survives nowhere (``secure_delete`` has zeroed it in the database's pages)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Checkpoint and truncate the WAL, then close (idempotent)."""
        with contextlib.suppress(sqlite3.Error):
            self._checkpoint()
        self._db.close()

    def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()


class _SqliteConnection:
    """``sqlite3`` as ``SqlStore`` calls it: ``execute``, ``executemany`` and the row count of
    the last statement."""

    key_share = ""
    """A write transaction holds the whole database: no row lock to add (``_enrolled``)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self._last = 0

    def execute(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        cursor = self._db.execute(sql, params)
        self._last = cursor.rowcount
        return cursor

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        self._db.executemany(sql, rows)

    def rowcount_of_last(self) -> int:
        return self._last


def open_store(target: str | os.PathLike) -> GalleryStore:
    """Open an existing gallery: a ``postgresql://`` URL (``lrface.search.postgres``) or a
    file, by what the file holds; GalleryError naming it when it is missing, of the older
    single-file format (with how to convert it), or not a gallery."""
    if is_database_url(target):
        from lrface.search.postgres import PostgresStore

        return PostgresStore(str(target))
    path = Path(target)
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


def create_store(
    target: str | os.PathLike, encoder: str, dim: int, encoder_name: str | None = None
) -> GalleryStore:
    """A new, empty gallery at ``target`` (a file, or a ``postgresql://`` database holding no
    gallery yet); GalleryError if one is there."""
    if is_database_url(target):
        from lrface.search.postgres import PostgresStore

        return PostgresStore.create(str(target), encoder, dim, encoder_name)
    return SqliteStore.create(target, encoder, dim, encoder_name)


def gallery_exists(target: str | os.PathLike) -> bool:
    """Whether ``target`` holds something to open (a file; a database with a gallery)."""
    if is_database_url(target):
        from lrface.search.postgres import holds_gallery

        return holds_gallery(str(target))
    return Path(target).exists()


def open_gallery(
    target: str | os.PathLike,
    encoder: str | None = None,
    dim: int | None = None,
    encoder_name: str | None = None,
) -> GalleryStore:
    """The one way to open a gallery (CLI, service, ``lrface.open_gallery``): the existing one
    at ``target``, a file or a ``postgresql://`` database (``open_store``), or, when
    ``encoder`` and ``dim`` are given and nothing is there yet, a new gallery for them
    (``create_store``). Given ``encoder``, an existing gallery made by another encoder is
    refused. GalleryError naming ``target`` (never its password) when it cannot be used."""
    local = not is_database_url(target)
    if (
        encoder is None
        or dim is None
        or gallery_exists(target)
        or (local and Path(target).is_symlink())
    ):
        store = open_store(target)
        if encoder is not None:
            try:
                store.check_compatible(encoder, dim if dim is not None else store.dim)
            except GalleryError:
                store.close()
                raise
        return store
    return create_store(target, encoder, dim, encoder_name)


def migrate(old: str | os.PathLike, new: str | os.PathLike) -> tuple[int, int]:
    """Copy a gallery into a new one; (identities, photos). ``old`` is a gallery file of the
    single-file (safetensors) format, an SQLite file or a ``postgresql://`` URL, ``new`` a new
    file or a database holding no gallery: SQLite to PostgreSQL and back keep every photo's
    source, hash, thumbnail and enrolment time, and the event log. From the single-file format,
    source photos that still exist are hashed, so a later enroll of the same folder skips them.
    A failed copy into a new file removes it."""
    with contextlib.ExitStack() as sources:
        if not is_database_url(old) and Path(old).suffix == SAFETENSORS_SUFFIX:
            gallery = Gallery.load(old)
            kind = (gallery.encoder, gallery.dim, gallery.encoder_name)
            people = [
                (name, None, [
                    Enrolment(e, s, _hash_if_file(s))
                    for e, s in zip(ident.embeddings, ident.sources, strict=True)
                ])
                for name, ident in ((n, gallery.identity(n)) for n in gallery.names)
            ]  # fmt: skip
            events: Iterator[EventRecord] = iter(())
        else:
            source = sources.enter_context(open_store(old))
            kind = (source.encoder, source.dim, source.encoder_name)
            people, events = source.records(), _all_events(source)
        store = create_store(new, *kind)
        identities = photos = 0
        try:
            for name, created, enrolments in people:
                photos += store.add(name, enrolments, created)[0]
                identities += 1
            for event in events:
                store.add_event(event)
        except BaseException:
            store.close()
            if not is_database_url(new):
                Path(new).unlink(missing_ok=True)
            raise
        store.close()
        return identities, photos


def _all_events(store: GalleryStore, batch: int = 1000) -> Iterator[EventRecord]:
    """Every logged event with its thumbnail, oldest first."""
    after = 0
    while chunk := store.events(EventQuery(after_id=after, limit=batch)):
        for event in chunk:
            event.thumbnail = store.event_thumbnail(event.id) if event.has_thumbnail else None
            yield event
        after = chunk[-1].id


def _hash_if_file(source: str) -> str | None:
    try:
        return file_sha256(Path(source).read_bytes()) if source else None
    except OSError:
        return None
