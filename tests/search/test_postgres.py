"""The PostgreSQL store beyond what it shares with SQLite (``test_store.py``): removal erases
the rows from the database's files, an audit entry naming an identity whose removal is under
way waits for it, ``migrate`` copies SQLite to PostgreSQL and back,
writers of one identity lose nothing, an older schema is brought up to date (name keys and the
audit log included; a removal redacts the audit log there too), and
``LiveGallery`` learns of another process's change at once (LISTEN) or before its next search
(SQLite)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lrface.search.gallery import GalleryError
from lrface.search.postgres import postgres_ddl
from lrface.search.store import (
    FORMAT,
    SCHEMA,
    Enrolment,
    EventQuery,
    EventRecord,
    SqliteStore,
    create_store,
    migrate,
    open_store,
    redacted,
)
from lrface.search.sync import LiveGallery

psycopg = pytest.importorskip("psycopg", reason="psycopg 3 not installed (lrface[postgres])")


def _unit(seed: int, n: int = 1, dim: int = 8) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _files_holding(root: Path, needle: bytes) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    ]


def test_removal_erases_the_rows_from_the_database_files(postgres_cluster, postgres_url):
    vector = np.frombuffer(b"ERASEME!" * 4, "<f4")
    thumb = b"FACEJPEG" + np.random.default_rng(0).bytes(4000)  # incompressible: kept as is
    gone = "Gonzaga Erasmina"  # in the identity, the audit log and its index (audit_names)
    with create_store(postgres_url, "enc", 8) as store:
        store.add("keep", [Enrolment(_unit(1)[0], "k.jpg", "hk", b"kept")])
        store.add(gone, [Enrolment(vector, "g.jpg", "hg", thumb)])
        store.audit("admin", "search", None, {}, {"faces": [{"identity": gone}]})
        store.audit("admin", "enroll", gone, {"name": gone}, {})
        base = postgres_cluster.dir / "data" / "base"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")  # the pages reach the table files
        needles = (b"ERASEME!", b"FACEJPEG", gone.encode())
        assert all(_files_holding(base, needle) for needle in needles)
        store.remove(gone, "admin")
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        assert {needle: _files_holding(base, needle) for needle in needles} == {
            needle: [] for needle in needles
        }
        assert [i.name for i in store.identities()] == ["keep"]
        log = store.audit_log()
        assert [e.action for e in log] == ["remove", "enroll", "search"]
        assert gone not in repr([e.to_dict() for e in log])  # redacted in the same change
        assert log[1].target == log[0].target == "[erased identity #2]"


def test_an_audit_naming_an_identity_being_removed_waits_for_the_removal(postgres_url):
    """The answer's names are checked with their rows share-locked: an audit naming Ann while
    a deletion of her row is uncommitted waits for it, then lists the entry under Ann if the
    deletion rolled back and not at all if it committed (the removal ran first: the race
    ``audit_names`` describes), never an index row for a name already gone."""
    answer = {"faces": [{"identity": "Ann", "score": 0.7}]}
    with create_store(postgres_url, "enc", 8) as store:
        for outcome, listed in (("rollback", True), ("commit", False)):
            store.add("Ann", [Enrolment(_unit(3)[0], "ann.jpg")])
            with psycopg.connect(postgres_url) as conn:  # one open transaction
                conn.execute("DELETE FROM identities WHERE name = 'Ann'")
                writer = threading.Thread(
                    target=store.audit, args=("admin", "search", None, {}, answer)
                )
                writer.start()
                writer.join(2.0)
                waited = writer.is_alive()
                getattr(conn, outcome)()
            writer.join(30.0)
            entry = store.audit_log(1)[0].id
            names = store._rows("SELECT name FROM audit_names WHERE audit_id = ?", (entry,))
            assert (waited, names) == (True, [("Ann",)] if listed else []), outcome


def test_normalization_statistics_migrate_and_are_erased_with_the_identity(
    postgres_cluster, postgres_url
):
    """The statistics table reaches PostgreSQL by the migration step SQLite takes; statistics
    are kept, replaced, dropped when the template moves and erased from the files with the
    identity."""
    from lrface.search.store import FORMAT_VERSION, IDENTITY_STATS, MIGRATIONS

    step = next(v for v, steps in MIGRATIONS.items() if IDENTITY_STATS in steps)
    create_store(postgres_url, "enc", 8).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # the version before it
        conn.execute("DROP TABLE identity_stats")
        conn.execute("DROP TABLE audit_names")  # a later step's
        conn.execute("UPDATE meta SET value = %s WHERE key = 'format_version'", (str(step),))
    stats = np.frombuffer(b"STATROW!" * 8, "<f4").reshape(4, 4)  # 4 bands x 4, findable
    assert np.isfinite(stats).all()
    base = postgres_cluster.dir / "data" / "base"
    with open_store(postgres_url) as store:
        for i, name in enumerate(("ann", "bob")):
            store.add(name, [Enrolment(_unit(i)[0], f"{name}.jpg", name)])
        store.put_identity_stats({"ann": {"enc-lr": stats}, "bob": {"enc-lr": stats[:2]}})
        store.put_identity_stats({"bob": {"enc-lr": np.ones((3, 4))}})  # replaced
        got = store.identity_stats()
        assert np.array_equal(got["ann"]["enc-lr"], stats) and got["bob"]["enc-lr"].shape == (3, 4)
        with pytest.raises(KeyError, match="cy"):
            store.put_identity_stats({"cy": {"enc-lr": stats}})
        store.add("bob", [Enrolment(_unit(5)[0], "bob2.jpg", "bob2")])  # the template moved
        assert set(store.identity_stats()) == {"ann"}
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        assert _files_holding(base, b"STATROW!")
        store.remove("ann")
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            version = conn.execute("SELECT value FROM meta WHERE key = 'format_version'")
            assert version.fetchone()[0] == str(FORMAT_VERSION)
        assert _files_holding(base, b"STATROW!") == [] and store.identity_stats() == {}


def test_migrate_sqlite_to_postgres_and_back_keeps_everything(tmp_path, postgres_url):
    source = tmp_path / "a.db"
    with SqliteStore.create(source, "enc", 8, "enc-name") as store:
        store.add(
            "ann", [Enrolment(e, f"ann{i}.jpg", f"h{i}", b"T") for i, e in enumerate(_unit(0, 3))]
        )
        store.add("bob", [Enrolment(_unit(1)[0], "bob.jpg")])
        store.add_event(EventRecord("door", "r1", 7, 1000.0, "ann", 0.8, 0.5, {"a": 1}, b"JPG"))
        people = store.identities()
    assert migrate(source, postgres_url) == (2, 4)
    back = tmp_path / "b.db"
    assert migrate(postgres_url, back) == (2, 4)
    for target in (postgres_url, back):
        with open_store(target) as store:
            assert (store.encoder, store.encoder_name, store.dim) == ("enc", "enc-name", 8)
            assert store.identities() == people  # names, photo counts, enrolment times
            assert store.enrolled_hashes("ann") == {"h0", "h1", "h2"}
            assert store.thumbnail("ann") == b"T"
            [event] = store.events(EventQuery())
            assert (event.camera, event.identity, event.details) == ("door", "ann", {"a": 1})
            assert store.event_thumbnail(event.id) == b"JPG"
            np.testing.assert_array_equal(
                store.load_gallery().identity("ann").embeddings, _unit(0, 3)
            )
    with pytest.raises(GalleryError, match="already holds a gallery"):
        migrate(back, postgres_url)


def test_writers_of_one_identity_lose_nothing(postgres_url):
    create_store(postgres_url, "enc", 8).close()

    def enroll(offset: int) -> None:
        with open_store(postgres_url) as store:
            for i in range(30):
                store.add(
                    "ann", [Enrolment(_unit(offset + i)[0], f"{offset + i}.jpg", str(offset + i))]
                )

    threads = [threading.Thread(target=enroll, args=(n * 100,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open_store(postgres_url) as store:
        assert store.identities()[0].photos == 90 and store.generation() == 90


def test_an_unreachable_or_foreign_database_is_named_without_its_password(postgres_cluster):
    bad = postgres_cluster.url("nosuch").replace("lrface@", "lrface:s3cret@")
    with pytest.raises(GalleryError, match="cannot connect to PostgreSQL") as err:
        open_store(bad)
    assert "s3cret" not in str(err.value) and "lrface:***@" in redacted(bad)
    with pytest.raises(GalleryError, match="holds no lrface gallery"):
        open_store(postgres_cluster.database())


def test_a_first_schema_gallery_is_brought_up_to_date(tmp_path, postgres_url):
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    meta = {"format": FORMAT, "format_version": "1", "encoder": "enc", "dim": "8"}
    db.executemany("INSERT INTO meta VALUES (?, ?)", [*meta.items(), ("generation", "5")])
    db.commit()
    db.close()
    with open_store(path) as store:
        assert store.changes_since(0) is None  # the log starts now: holders reload
        assert store.events(EventQuery()) == []
        store.add("ann", [Enrolment(_unit(0)[0], "a.jpg")])
        assert store.changes_since(5)[0] == 6
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in postgres_ddl(SCHEMA).split(";"):
            if statement.strip():
                conn.execute(statement)
        for key, value in [*meta.items(), ("generation", "0")]:
            conn.execute("INSERT INTO meta VALUES (%s, %s)", (key, value))
        conn.execute("INSERT INTO identities (name, created) VALUES ('Tony_Blair', 0)")
    with open_store(postgres_url) as store:
        assert store.resolve("tony blair") == "Tony_Blair"  # name keys filled in on the way
        store.add("ann", [Enrolment(_unit(0)[0], "a.jpg")])
        assert store.changes_since(0)[0] == 1
        store.audit("cli:x", "enroll", "ann", {}, {})
        assert store.audit_log()[0].target == "ann"


def _wait_for(condition, seconds: float = 1.0) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, "not seen in time"
        time.sleep(0.01)
    return time.monotonic() - start


def test_live_gallery_learns_of_another_process_s_change_within_a_second(postgres_url):
    with create_store(postgres_url, "enc", 8) as writer, open_store(postgres_url) as reader:
        writer.add("ann", [Enrolment(_unit(0)[0], "a.jpg")])
        live = LiveGallery(reader)
        try:
            assert live.reloads == 1 and live.generation == 1
            writer.add("bob", [Enrolment(_unit(1)[0], "b.jpg")])
            writer.add("ann", [Enrolment(_unit(2)[0], "a2.jpg")])
            _wait_for(lambda: live.generation == 3)  # pushed: no search asked for it
            with live._lock:
                assert live._gallery.names == ["ann", "bob"]
                assert len(live._gallery.identity("ann").embeddings) == 2
            writer.remove("ann")
            _wait_for(lambda: live.generation == 4)
            assert [m.name for m in live.search(_unit(0), 5)[0]] == ["bob"]
            assert live.reloads == 1  # every change applied by identity, none by a rebuild
        finally:
            live.close()


def test_sqlite_live_gallery_is_in_step_at_each_search(tmp_path):
    path = tmp_path / "g.db"
    with SqliteStore.create(path, "enc", 8) as writer, open_store(path) as reader:
        live = LiveGallery(reader)
        writer.add("ann", [Enrolment(_unit(0)[0], "a.jpg")])
        assert live.search(_unit(0), 1)[0][0].name == "ann"
        writer.remove("ann")
        assert len(live) == 0 and live.reloads == 1 and live.updates == 2


def test_gallery_commands_take_a_database_url(tmp_path, postgres_url):
    from typer.testing import CliRunner

    from lrface.cli import app

    source = tmp_path / "a.db"
    with SqliteStore.create(source, "enc", 8) as store:
        store.add("ann", [Enrolment(_unit(0)[0], "a.jpg")])
        store.add("bob", [Enrolment(_unit(1)[0], "b.jpg")])
    secret = postgres_url.replace("lrface@", "lrface:hunter2@")  # trust auth ignores it
    runner = CliRunner()
    result = runner.invoke(app, ["gallery", "migrate", str(source), secret])
    assert result.exit_code == 0 and "migrated 2 identities (2 photos)" in result.output
    assert "hunter2" not in result.output
    result = runner.invoke(app, ["gallery", "remove", "bob", "--gallery", secret])
    assert (
        result.exit_code == 0 and "1 identities left in postgresql://lrface:***@" in result.output
    )
    result = runner.invoke(app, ["gallery", "list", "--gallery", postgres_url])
    assert "1 identities, encoder enc (8-d)" in result.output and "ann\t1 photo(s)" in result.output


def test_open_gallery_creates_in_an_empty_database_and_checks_the_encoder(postgres_url):
    from lrface.search import open_gallery

    with open_gallery(postgres_url, "enc", 8, "enc-name") as store:
        assert (store.encoder, store.encoder_name, len(store)) == ("enc", "enc-name", 0)
    with open_gallery(postgres_url) as store:
        assert store.encoder == "enc"
    with pytest.raises(GalleryError, match="gallery was enrolled with encoder enc, not other"):
        open_gallery(postgres_url, "other", 8)
