"""Gallery stores, SQLite and PostgreSQL alike (``target``): round trip, dedup by photo hash,
the generation counter and change log, two processes writing at once, a writer killed
mid-enroll, a removal redacting exactly the audit entries its index (``audit_names``) lists,
which holds the request's strings and only the enrolled names of the answer, and that index
built for a gallery of the version before it; the SQLite file's mode, a
removed identity's bytes gone from its files, and an SQLite gallery of the first schema
brought up to date."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lrface.search.gallery import GalleryError
from lrface.search.store import (
    AUDIT_NAMES,
    FORMAT_VERSION,
    MIGRATIONS,
    Enrolment,
    NameConflict,
    SqliteStore,
    create_store,
    is_database_url,
    json_strings,
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
    store.audit("user", "verify", None, {}, {"scores": {SECRET: 0.9}})  # a key, indexed too
    assert SECRET.encode() in _db_bytes(path)
    store.remove(SECRET)
    data = _db_bytes(path)  # the store is still open: a kill -9 now must not keep it either
    for needle in (SECRET.encode(), b"THUMBNAIL-OF-ZELDA", b"Zelda", SECRET.lower().encode()):
        assert needle not in data, needle
    log = store.audit_log()
    assert [e.action for e in log] == ["verify", "enroll", "search"]
    assert log[1].target.startswith("[erased identity #") and "Bob" in log[2].answer["answers"]
    store.close()
    for needle in (SECRET.encode(), b"THUMBNAIL-OF-ZELDA"):
        assert needle not in _db_bytes(path)
    with open_store(path) as store:
        assert [i.name for i in store.identities()] == ["Bob"]


def _audit_rows(store, name: str) -> list[int]:
    """The audit entries the store's index says carry ``name``."""
    rows = store._rows("SELECT audit_id FROM audit_names WHERE name = ? ORDER BY audit_id", (name,))
    return [int(i) for (i,) in rows]


def _log_ann_and_bob(store) -> dict[str, int]:
    """Audit entries naming Ann (enrolled) in each place a name can be (target, nested in the
    answer's lists, the answer's key, the request's value after a quote, the request's key),
    Bob alone, and Cy (never enrolled) in an answer and in a request; {what: entry id}."""
    entries = {
        "list": ("search", None, {"k": 5}, {"faces": [{"top": [["Bob", 0.4], ["Ann", 0.9]]}]}),
        "key": ("verify", None, {"a": "h1"}, {"scores": {"Ann": 0.8}}),
        "quote": ("watch", None, {"camera": 'door "Ann'}, {}),
        "asked": ("verify", None, {"Ann": {"sha256": "h2"}}, {"same": True}),
        "bob": ("enroll", "Bob", {"photos": 1}, {"added": 1}),
        "target": ("enroll", "Ann", {"photos": 1}, {"added": 1}),
        "cy answered": ("search", None, {}, {"identity": "Cy", "score": 0.6}),
        "cy asked": ("verify", None, {"claim": "Cy"}, {"same": False}),
    }
    for action, target, request, answer in entries.values():
        store.audit("admin", action, target, request, answer)
    ids = [e.id for e in store.audit_log()][::-1]
    return dict(zip(entries, ids, strict=True))


ANN_ENTRIES = ("list", "key", "quote", "asked", "target")
"""The entries of ``_log_ann_and_bob`` naming Ann, in the order they are logged."""


def test_json_strings_are_what_the_redaction_rewrites():
    text = json.dumps(
        {"probe": {"sha256": "h"}, "names": ["Ann", ["Cy"]], "k": 5, "Bob": [0.5, None, True]}
        | {'say "Dee': "x\x00y"}
    )
    assert json_strings(text) == {
        *("probe", "sha256", "h", "names", "Ann", "Cy", "k", "Bob"),
        *('say "Dee', "Dee"),  # the quoted name "Dee" is in the text, so it is redacted
    }  # no number, and no NUL, which no name holds


def _indexed(store, *strings: str) -> dict[str, list[int]]:
    """{string: the audit entries the index lists under it}."""
    return {s: _audit_rows(store, s) for s in strings}


def _check_index(store, ids: dict[str, int]) -> None:
    """What ``audit_names`` holds for ``_log_ann_and_bob``'s entries, Ann and Bob enrolled:
    the target, and of the request and the answer only the enrolled names."""
    assert _indexed(store, "Ann", "Bob", "Cy") == {
        "Ann": [ids[k] for k in ANN_ENTRIES],
        "Bob": [ids["list"], ids["bob"]],
        "Cy": [],  # in a request and an answer, but never enrolled
    }
    asked = ("k", "a", "h1", "camera", 'door "Ann', "sha256", "h2", "photos", "claim")
    answered = ("faces", "top", "scores", "score", "identity", "added", "same")
    assert _indexed(store, *asked, *answered) == {s: [] for s in (*asked, *answered)}


def test_a_removal_redacts_the_entries_naming_the_person_and_no_other(target):
    with create_store(target, "enc", 8) as store:
        for i, name in enumerate(("Ann", "Bob")):
            store.add(name, [Enrolment(_unit(i, 1)[0], f"{name}.jpg")])
        ids = _log_ann_and_bob(store)
        store.audit("admin", "watch", None, {"camera": "door\x00"}, {})  # PostgreSQL takes it
        before = {e.id: e for e in store.audit_log()}
        _check_index(store, ids)
        store.remove("Ann", "admin")
        erased = "[erased identity #1]"
        after = {e.id: e for e in store.audit_log()}
        assert "Ann" not in repr([e.to_dict() for e in after.values()])
        assert after[ids["key"]].answer == {"scores": {erased: 0.8}}
        assert after[ids["list"]].answer["faces"][0]["top"] == [["Bob", 0.4], [erased, 0.9]]
        assert after[ids["quote"]].request == {"camera": f'door "{erased}'}
        assert after[ids["asked"]].request == {erased: {"sha256": "h2"}}
        assert after[ids["target"]].target == erased
        named = [ids[k] for k in ANN_ENTRIES]
        untouched = [i for i in before if i not in named]
        assert all(after[i] == before[i] for i in untouched)
        assert _audit_rows(store, "Ann") == []  # the index held the name: it goes too
        assert _audit_rows(store, "Bob") == [ids["list"], ids["bob"]]
        removal = max(after)
        assert after[removal].target == erased and _audit_rows(store, erased) == [removal]
        store.remove("Bob")
        assert "Bob" not in repr([e.to_dict() for e in store.audit_log()])


def _run_sql(target: str, *statements: str) -> None:
    """Run ``statements`` on the gallery database at ``target``, behind the store's back."""
    if is_database_url(target):
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(target, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
    else:
        with contextlib.closing(sqlite3.connect(target)) as db, db:
            for statement in statements:
                db.execute(statement)


def test_a_version_4_gallery_indexes_its_audit_log_and_removal_redacts_it(target, monkeypatch):
    """A gallery of the version before ``audit_names`` gains it, filled from the entries
    already logged by the rule of new ones (two entries and one name check at a time here, so
    that the batches are followed to the end), and a removal afterwards redacts them."""
    from lrface.search import store as store_module

    step = next(v for v, steps in MIGRATIONS.items() if AUDIT_NAMES in steps)
    with create_store(target, "enc", 8) as store:
        for i, name in enumerate(("Bob", "Ann")):
            store.add(name, [Enrolment(_unit(i, 1)[0], f"{name}.jpg")])
        ids = _log_ann_and_bob(store)
        before = store.audit_log()
    _run_sql(
        target,
        "DROP TABLE audit_names",
        f"UPDATE meta SET value = '{step}' WHERE key = 'format_version'",
    )
    monkeypatch.setattr(store_module, "AUDIT_BATCH", 2)
    monkeypatch.setattr(store_module, "NAME_CHECK_BATCH", 1)
    with open_store(target) as store:
        assert store.audit_log() == before
        _check_index(store, ids)
        store.remove("Ann")
        log = store.audit_log()
        assert "Ann" not in repr([e.to_dict() for e in log]) and "Bob" in repr(log)
        assert store._rows("SELECT value FROM meta WHERE key = 'format_version'") == [
            (str(FORMAT_VERSION),)
        ]


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
