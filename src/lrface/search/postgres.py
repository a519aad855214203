"""A gallery in a PostgreSQL database (``postgresql://`` URL), for several servers and watch
workers, on several machines, sharing one watch-list and one event log.

The tables and every query are the SQLite store's (``lrface.search.store.SqlStore``; the
schema is translated by ``postgres_ddl``), reached through a ``psycopg_pool`` connection pool.
The guarantees are the same: an enrolment batch or a removal is one transaction, which first
updates the ``generation`` row of ``meta``; the row lock that takes makes concurrent writers
wait for each other's commit, so none loses another's update and generations follow commit
order. In the same transaction a ``NOTIFY lrface_gallery`` (delivered at commit) tells every
listening process (``watch_changes``, run by ``lrface.search.sync.LiveGallery``) to update its
faiss index at once; the generation counter catches whatever a lost notification missed.

Removal deletes the rows (the identity's normalization statistics with them), redacts the
audit log and deletes the name's rows of its index (``audit_names``), then runs ``VACUUM FULL``
on those tables: PostgreSQL never overwrites a row in place, and a plain ``VACUUM`` only marks
the dead tuples' space free (tried on PostgreSQL 15: a removed embedding's bytes were still in
the table's file); ``VACUUM FULL`` writes the tables anew without them and drops the old files,
after which tests/search/test_postgres.py finds them in none of the database's files.
What PostgreSQL does not promise (docs/service.md, "Erasure"): the bytes of a removed tuple can
survive in the write-ahead log until it is recycled, in base backups, WAL archives and
replicas, and in file-system blocks PostgreSQL freed; those need the operator's retention
rules (and disk encryption).

One database holds one gallery (the tables are named as SQLite's); use a database per gallery.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from lrface.search.gallery import GalleryError
from lrface.search.store import MIGRATIONS, Change, SqlStore, new_schema, redacted

CHANNEL = "lrface_gallery"
SCHEMA_LOCK = 0x6C7266616365  # pg_advisory_xact_lock key of schema changes ("lrface")
TYPES = (
    ("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"),
    ("INTEGER", "BIGINT"),
    ("REAL", "DOUBLE PRECISION"),
    ("BLOB", "BYTEA"),
)


def postgres_ddl(sqlite_ddl: str) -> str:
    """The SQLite schema in PostgreSQL's types (64-bit ids, doubles, ``bytea``), without
    SQLite's ``WITHOUT ROWID``: a PostgreSQL table is a heap beside its key's index anyway."""
    for sqlite_type, pg_type in TYPES:
        sqlite_ddl = re.sub(rf"\b{sqlite_type}\b", pg_type, sqlite_ddl)
    return sqlite_ddl.replace(" WITHOUT ROWID", "")


def _psycopg():
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise GalleryError(
            "a postgresql:// gallery needs psycopg 3 and psycopg_pool: "
            "pip install 'lrface[postgres]'"
        ) from None
    return psycopg, psycopg_pool


def _connect(url: str):
    """A plain (autocommit) connection; GalleryError naming the database if it fails."""
    psycopg, _ = _psycopg()
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GalleryError(f"{redacted(url)}: cannot connect to PostgreSQL ({reason})") from None


def holds_gallery(url: str) -> bool:
    """Whether the database at ``url`` holds a gallery (its ``meta`` table)."""
    with _connect(url) as conn:
        return conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]


class _PgConnection:
    """A psycopg connection as ``SqlStore`` calls it (``?`` placeholders)."""

    key_share = " FOR KEY SHARE"
    """What a ``SELECT`` adds to lock the rows it reads against their deletion until the
    commit (``lrface.search.store._enrolled``)."""

    def __init__(self, conn: Any):
        self._conn = conn
        self._last = 0

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        cursor = self._conn.execute(sql.replace("?", "%s"), params)
        self._last = cursor.rowcount
        return cursor

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows)

    def rowcount_of_last(self) -> int:
        return self._last


class PostgresStore(SqlStore):
    """A gallery in the PostgreSQL database at ``url``; see the module docstring."""

    migrations = {
        version: [postgres_ddl(step) if isinstance(step, str) else step for step in steps]
        for version, steps in MIGRATIONS.items()
    }

    def __init__(self, url: str, pool_size: int = 4):
        _, psycopg_pool = _psycopg()
        self._url = url
        self.path = redacted(url)
        if not holds_gallery(url):  # also names an unreachable database
            raise GalleryError(f"{self.path}: the database holds no lrface gallery")
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=pool_size, open=True, name="lrface-gallery"
        )
        try:
            self._check_meta(self._read_meta(), "a PostgreSQL database")
        except BaseException:
            self._pool.close()
            raise

    @classmethod
    def create(
        cls, url: str, encoder: str, dim: int, encoder_name: str | None = None
    ) -> PostgresStore:
        """A new, empty gallery in the database at ``url`` (which must exist: ``createdb``);
        GalleryError if it holds one already."""
        with _connect(url) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            if conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]:
                raise GalleryError(f"{redacted(url)}: already holds a gallery")
            for statement in new_schema():
                conn.execute(postgres_ddl(statement))
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO meta VALUES (%s, %s)",
                    list(cls.initial_meta(encoder, dim, encoder_name).items()),
                )
        return cls(url)

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[_PgConnection]:
        with self._pool.connection() as conn, conn.transaction():
            yield _PgConnection(conn)

    def _lock_schema(self, db: _PgConnection) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))

    def _before_commit(self, change: Change) -> None:
        change.db.execute("SELECT pg_notify(?, ?)", (CHANNEL, str(change.generation)))

    def _committed(self, change: Change, removal: bool) -> None:
        if removal:  # the tables written anew without the removed rows (module docstring)
            with self._pool.connection() as conn:
                conn.autocommit = True
                try:
                    conn.execute(
                        "VACUUM FULL embeddings, identity_stats, identities, audit, audit_names"
                    )
                finally:
                    conn.autocommit = False

    def watch_changes(self, changed: Callable[[], None], stop: threading.Event) -> bool:
        """Call ``changed`` at each committed change (LISTEN), and once a second anyway (the
        generation check that catches a notification lost while reconnecting), until
        ``stop`` is set; reconnects after a lost connection."""
        psycopg, _ = _psycopg()
        while not stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not stop.is_set():
                        changed()
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
            except psycopg.Error:  # the database restarting, the network: try again
                stop.wait(1.0)
        return True

    def close(self) -> None:
        self._pool.close()
