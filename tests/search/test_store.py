"""SQLite gallery store: round trip, dedup by photo hash, the generation counter, file mode,
two processes writing at once, and a writer killed mid-enroll."""

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
from lrface.search.store import Enrolment, SqliteStore, open_gallery, open_store


def _unit(seed: int, n: int, dim: int = 8) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_round_trip_dedup_generation_and_search(tmp_path):
    path = tmp_path / "g.db"
    store = SqliteStore.create(path, "enc", 8, "enc-name")
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
        with pytest.raises(GalleryError, match="g.db: gallery was enrolled with encoder enc"):
            store.check_compatible("other", 8)


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


def test_two_processes_enrolling_at_once_lose_nothing(tmp_path):
    path = tmp_path / "g.db"
    SqliteStore.create(path, "enc", 8).close()
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


def test_kill_9_mid_enroll_keeps_every_earlier_commit(tmp_path):
    path = tmp_path / "g.db"
    SqliteStore.create(path, "enc", 8).close()
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

        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        people = store.identities()
        assert len(people) >= seen and len(people) == store.generation()
        assert all(p.photos == 2 for p in people)  # no half-written identity
        assert len(store.load_gallery()) == len(people)


def test_open_gallery_opens_creates_and_refuses_another_encoder(tmp_path):
    path = tmp_path / "g.db"
    with pytest.raises(GalleryError, match="no such gallery"):
        open_gallery(path)
    open_gallery(path, "enc", 8, "nice-name").close()
    with open_gallery(path) as store:
        assert (store.encoder, store.encoder_name, store.dim) == ("enc", "nice-name", 8)
    with pytest.raises(GalleryError, match="g.db"):
        open_gallery(path, "other", 8)
