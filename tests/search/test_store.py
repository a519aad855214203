"""Gallery stores, SQLite and PostgreSQL alike (``target``): round trip, dedup by photo hash,
the generation counter and change log, two processes writing at once, and a writer killed
mid-enroll; the SQLite file's mode and an SQLite gallery of the first schema brought up to
date."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lrface.search.gallery import GalleryError
from lrface.search.store import (
    FORMAT_VERSION,
    Enrolment,
    NameConflict,
    SqliteStore,
    create_store,
    is_database_url,
    open_gallery,
    open_store,
)


def _unit(seed: int, n: int, dim: int = 8) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path) -> str:
    """Where a new gallery goes: an SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "g.db")
    return request.getfixturevalue("postgres_url")


def test_round_trip_dedup_generation_and_search(target):
    path = target
    store = create_store(path, "enc", 8, "enc-name")
    assert store.generation() == 0 and len(store) == 0
    ann, bob = _unit(0, 3), _unit(1, 2)
    added, gen = store.add(
        "ann", [Enrolment(e, f"ann/{i}.jpg", f"h{i}") for i, e in enumerate(ann)]
    )
    assert (added, gen) == (3, 1)
    # the same photos again (same hashes) add nothing; a new one is added
    again = [Enrolment(ann[0], "copy.jpg", "h0"), Enrolment(bob[0], "new.jpg", "h9", b"jpg")]
    assert store.add("ann", again) == (1, 2)
    assert store.add("bob", [Enrolment(e, "b.jpg") for e in bob])[0] == 2  # no hash: kept
    assert store.enrolled_hashes("ann") == {"h0", "h1", "h2", "h9"}
    assert store.thumbnail("ann") == b"jpg" and store.thumbnail("bob") is None
    generation, touched = store.changes_since(0)  # ann twice and bob: two identities
    assert generation == 3 and len(touched) == 2 and store.changes_since(3) == (3, [])
    store.close()

    with open_store(path) as store:
        assert (store.encoder, store.encoder_name, store.dim) == ("enc", "enc-name", 8)
        assert [(i.name, i.photos) for i in store.identities()] == [("ann", 4), ("bob", 2)]
        gallery = store.load_gallery()
        assert gallery.search(ann[1:2], 1)[0][0].name == "ann"
        np.testing.assert_allclose(gallery.identity("bob").embeddings, bob, atol=0)
        assert store.remove("ann") == store.generation() == 4
        with pytest.raises(KeyError):
            store.remove("ann")
        with pytest.raises(KeyError):
            store.thumbnail("ann")
        assert store.enrolled_hashes("ann") == set()  # its photos went with it
        with pytest.raises(ValueError, match="finite 8-d"):
            store.add("eve", [Enrolment(np.ones(4), "x.jpg")])
        assert [i.name for i in store.identities()] == ["bob"]
        store.check_compatible("enc", 8)
        with pytest.raises(GalleryError, match="gallery was enrolled with encoder enc"):
            store.check_compatible("other", 8)
        assert store.changes_since(2) == (4, touched[::-1])  # bob, then ann's removal
    with pytest.raises(GalleryError, match="already"):
        create_store(path, "enc", 8)


def test_files_are_owner_only_and_existing_paths_are_never_overwritten(tmp_path):
    path = tmp_path / "g.db"
    old = os.umask(0o022)
    try:
        with open_gallery(path, "enc", 8) as store:
            store.add("ann", [Enrolment(_unit(0, 1)[0], "a.jpg")])
            modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert modes["g.db"] == 0o600 and modes.get("g.db-wal", 0o600) == 0o600
    with pytest.raises(GalleryError, match="already exists"):
        SqliteStore.create(path, "enc", 8)
    other = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(other).execute("CREATE TABLE x (y)").connection.close()
    with pytest.raises(GalleryError, match="other.db: an SQLite database, but not an lrface"):
        open_store(other)
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(GalleryError, match="empty.db: empty file"):
        open_store(tmp_path / "empty.db")


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from lrface.search.store import Enrolment, open_store
    path, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(abs(hash(prefix)) % 1000)
    with open_store(path) as store:
        print("ready", flush=True)
        sys.stdin.readline()  # start together
        for i in range(count):
            v = rng.normal(size=(2, 8)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            store.add(f"{prefix}{i:05d}", [Enrolment(v[0], "a.jpg"), Enrolment(v[1], "b.jpg")])
    """
)


def _writer(path: Path, prefix: str, count: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), prefix, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_two_processes_enrolling_at_once_lose_nothing(target):
    path = target
    create_store(path, "enc", 8).close()
    writers = [_writer(path, prefix, 200) for prefix in ("a", "b")]
    for proc in writers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in writers:
        assert proc.wait(timeout=120) == 0
    with open_store(path) as store:
        people = store.identities()
        assert len(people) == 400 and all(p.photos == 2 for p in people)
        assert store.generation() == 400
        assert len(store.load_gallery()) == 400
        assert len(store.changes_since(0)[1]) == 400


def test_kill_9_mid_enroll_keeps_every_earlier_commit(target):
    path = target
    create_store(path, "enc", 8).close()
    proc = _writer(path, "k", 100_000)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    with open_store(path) as watcher:
        while watcher.generation() < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = watcher.generation()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert seen >= 30
    with open_store(path) as store:
        import sqlite3

        if not is_database_url(path):
            assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        people = store.identities()
        assert len(people) >= seen and len(people) == store.generation()
        assert all(p.photos == 2 for p in people)  # no half-written identity
        assert len(store.load_gallery()) == len(people)


SECRET = "Zelda Quartermaine"


def _db_bytes(path: Path) -> bytes:
    """The database and whatever -wal / -shm files SQLite left beside it."""
    return b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


def test_a_removed_identity_leaves_no_trace_in_the_database_files(tmp_path):
    """Issue 26, item 3: the name, the source file names and the thumbnail bytes of a removed
    identity are nowhere in the db, -wal or -shm files, even before the store is closed."""
    path = tmp_path / "g.db"
    store = SqliteStore.create(path, "enc", 8)
    thumb = b"\xff\xd8THUMBNAIL-OF-ZELDA" * 20
    store.add(
        SECRET,
        [
            Enrolment(e, f"/photos/{SECRET}_{i}.jpg", f"sha{i}", thumb)
            for i, e in enumerate(_unit(0, 3))
        ],
    )
    store.add("Bob", [Enrolment(_unit(1, 1)[0], "bob.jpg", "shab")])
    store.audit("user", "search", None, {"probe_sha256": "p"}, {"answers": [SECRET, "Bob"]})
    store.audit("user", "enroll", SECRET, {"photos": 3}, {"added": 3})
    assert SECRET.encode() in _db_bytes(path)
    store.remove(SECRET)
    data = _db_bytes(path)  # the store is still open: a kill -9 now must not keep it either
    for needle in (SECRET.encode(), b"THUMBNAIL-OF-ZELDA", b"Zelda", SECRET.lower().encode()):
        assert needle not in data, needle
    log = store.audit_log()
    assert [e.action for e in log] == ["enroll", "search"]
    assert log[0].target.startswith("[erased identity #") and "Bob" in log[1].answer["answers"]
    store.close()
    for needle in (SECRET.encode(), b"THUMBNAIL-OF-ZELDA"):
        assert needle not in _db_bytes(path)
    with open_store(path) as store:
        assert [i.name for i in store.identities()] == ["Bob"]


def test_one_identity_per_name_key_and_photo_owners(tmp_path):
    with SqliteStore.create(tmp_path / "g.db", "enc", 8) as store:
        store.add("Tony_Blair", [Enrolment(_unit(0, 1)[0], "t.jpg", "same-photo")])
        for other in ("TONY_BLAIR", "Tony Blair", "tony-blair"):
            with pytest.raises(NameConflict, match="same identity as the enrolled 'Tony_Blair'"):
                store.add(other, [Enrolment(_unit(1, 1)[0], "x.jpg", "x")])
        assert store.resolve("tony blair") == "Tony_Blair" and store.resolve("Ann") is None
        store.add("Ann", [Enrolment(_unit(2, 1)[0], "a.jpg", "same-photo")])
        assert store.photo_owners("same-photo") == {"Tony_Blair", "Ann"}
        assert len(store) == 2


def test_a_version_1_gallery_is_upgraded_when_opened(tmp_path):
    """Version-1 databases (before the change log, the event log, name keys and the audit log)
    open and gain them all, in order; two names with one key in them stay readable."""
    import sqlite3

    from lrface.search.store import SCHEMA

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    meta = {
        "format": "lrface-gallery-sqlite",
        "format_version": "1",
        "encoder": "enc",
        "dim": "8",
        "generation": "0",
    }
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    for i, name in enumerate(("Ann", "ANN")):
        db.execute("INSERT INTO identities (name, created) VALUES (?, 0)", (name,))
        db.execute(
            "INSERT INTO embeddings (identity_id, vector, source, encoder, added) "
            "VALUES (?, ?, 's', 'enc', 0)",
            (i + 1, _unit(i, 1)[0].tobytes()),
        )
    db.commit()
    db.close()
    with open_store(path) as store:
        assert [i.name for i in store.identities()] == ["ANN", "Ann"]
        assert store.resolve("ANN") == "ANN" and store.resolve("ann") in {"Ann", "ANN"}
        store.audit("admin", "remove", "x", {}, {})
        assert store.audit_log()[0].actor == "admin"
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert version == (str(FORMAT_VERSION),)
    assert {"changes", "events", "audit"} <= tables


def test_open_gallery_opens_creates_and_refuses_another_encoder(tmp_path):
    path = tmp_path / "g.db"
    with pytest.raises(GalleryError, match="no such gallery"):
        open_gallery(path)
    open_gallery(path, "enc", 8, "nice-name").close()
    with open_gallery(path) as store:
        assert (store.encoder, store.encoder_name, store.dim) == ("enc", "nice-name", 8)
    with pytest.raises(GalleryError, match="g.db"):
        open_gallery(path, "other", 8)
