"""Normalized gallery search: statistics kept per identity (in memory and in the SQLite store,
which migrates an older database; PostgreSQL: test_postgres.py), reranking by the normalized
score, raw where not covered."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from lrface.calibration import FaceRef
from lrface.constants import TEMPLATE_FLIP
from lrface.search.cohort import Cohort, read_cohort, write_cohort
from lrface.search.gallery import Gallery
from lrface.search.normalize import Normalizer, normalize_scores, side_stats
from lrface.search.store import (
    FORMAT_VERSION,
    IDENTITY_STATS,
    MIGRATIONS,
    Enrolment,
    SqliteStore,
    open_store,
)


def unit(v):
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def make_cohort(tmp_path, dim=16) -> Cohort:
    rng = np.random.default_rng(0)
    cohort = Cohort(
        "enc-lr", unit(rng.normal(size=(60, dim))),
        {16: unit(rng.normal(size=(60, dim))), None: unit(rng.normal(size=(60, dim)))}, {},
    )  # fmt: skip
    return read_cohort(write_cohort(cohort, tmp_path / "c.safetensors"))  # as shipped: float16


def test_cohort_file_round_trip_is_float16_and_names_bands(tmp_path):
    cohort = make_cohort(tmp_path)
    assert set(cohort.bands) == {16, None} and cohort.gallery.shape == (60, 16)
    assert cohort.band_index(14) == 0 and cohort.band_index(None) == 1 and cohort.digest
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.safetensors: not a readable cohort"):
        read_cohort(tmp_path / "bad.safetensors")


def test_search_reranks_by_the_normalized_score(tmp_path):
    cohort = make_cohort(tmp_path)
    rng = np.random.default_rng(1)
    gallery = Gallery("teacher", 16)
    for i in range(30):
        gallery.add(f"p{i}", unit(rng.normal(size=(2, 16))))
    queries = unit(rng.normal(size=(4, 16)))
    raw = gallery.search(queries, 5)
    normalizer = Normalizer("asnorm", {"enc-lr": cohort}, top_k=10)
    gallery.use_scoring(normalizer)
    probes = [FaceRef("enc-lr", 16)] * 3 + [FaceRef("other", 16)]
    found = gallery.search(queries, 5, probes)
    # the last probe's encoder has no cohort: raw cosine, unchanged
    assert [(m.name, m.score) for m in found[3]] == [(m.name, m.score) for m in raw[3]]
    # the others: every candidate's normalized score, recomputed by hand, best first
    names = gallery.names
    templates = np.stack([gallery.identity(n).template for n in names])
    for row in range(3):
        scores = queries[row] @ templates.T
        expected = normalize_scores(
            scores[None], "asnorm", side_stats(queries[row : row + 1], cohort.gallery, 10),
            side_stats(templates, cohort.bands[16], 10),
        )[0]  # fmt: skip
        order = np.argsort(-expected)[:5]
        assert [m.name for m in found[row]] == [names[j] for j in order]
        assert np.allclose([m.score for m in found[row]], expected[order], atol=1e-4)
        assert all(m.raw is not None for m in found[row])
    # enrolling more photos moves the template: its statistics are recomputed
    key = normalizer.stats_key("enc-lr")
    before = gallery.identity_stats("p0")[key].copy()
    gallery.add("p0", unit(rng.normal(size=(1, 16))))
    assert not np.allclose(gallery.identity_stats("p0")[key], before)


def test_store_keeps_statistics_drops_them_on_change_and_migrates(tmp_path):
    cohort = make_cohort(tmp_path)
    normalizer = Normalizer("snorm", {"enc-lr": cohort}, top_k=10)
    key = normalizer.stats_key("enc-lr")
    path = tmp_path / "g.db"
    rng = np.random.default_rng(2)
    with SqliteStore.create(path, "teacher", 16) as store:
        for name in ("ann", "bob"):
            store.add(
                name, [Enrolment(e, f"{name}.jpg", name) for e in unit(rng.normal(size=(2, 16)))]
            )
        store.update_identity_stats(normalizer, ["ann", "bob"])
        stored = store.identity_stats()
        assert set(stored) == {"ann", "bob"} and stored["ann"][key].shape == (2, 4)
        gallery = store.load_gallery(normalizer)
        assert np.allclose(gallery.identity_stats("ann")[key], stored["ann"][key])
        store.add("ann", [Enrolment(unit(rng.normal(size=16)), "new.jpg", "n1")])
        assert set(store.identity_stats()) == {"bob"}  # ann's template moved
        with pytest.raises(ValueError, match="bands x 4"):
            store.put_identity_stats({"bob": {key: np.zeros(3)}})
        store.remove("bob")
        assert store.identity_stats() == {}
    # a database of the version before the statistics table is migrated on open, data kept
    old = tmp_path / "old.db"
    with SqliteStore.create(old, "teacher", 16) as store:
        store.add("cy", [Enrolment(unit(rng.normal(size=16)), "cy.jpg", "c")])
    db = sqlite3.connect(old)
    db.execute("DROP TABLE identity_stats")
    db.execute("DROP TABLE audit_names")  # a later step's
    db.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(stats_step()),))
    db.commit()
    db.close()
    with open_store(old) as store:
        assert [i.name for i in store.identities()] == ["cy"] and store.identity_stats() == {}
        store.update_identity_stats(normalizer, ["cy"])
        assert set(store.identity_stats()) == {"cy"}
    db = sqlite3.connect(old)
    assert db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == (
        str(FORMAT_VERSION),
    )
    db.close()


def stats_step() -> int:
    """The format version whose migration adds the statistics table."""
    return next(v for v, steps in MIGRATIONS.items() if IDENTITY_STATS in steps)


def test_shipped_cohorts_are_pinned_and_describe_their_encoder(tmp_path, monkeypatch):
    from lrface.search import cohort as cohort_module

    for name in cohort_module.MANIFEST:
        cohort = cohort_module.load_cohort(name)
        assert cohort.gallery.shape[1] == 128 and len(cohort.gallery) >= 1000
        assert all(len(rows) == len(cohort.gallery) for rows in cohort.bands.values())
        assert cohort.info["probe_encoder"] and cohort.digest == cohort_module.MANIFEST[name]
        # its gallery side is made as enrolment makes templates
        assert cohort.info["gallery_flip"] == TEMPLATE_FLIP
    name = next(iter(cohort_module.MANIFEST))
    damaged = tmp_path / f"{name}.safetensors"
    data = bytearray((cohort_module.COHORT_DIR / f"{name}.safetensors").read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(cohort_module, "COHORT_DIR", tmp_path)
    with pytest.raises(cohort_module.CohortIntegrityError, match="does not match the pinned"):
        cohort_module.load_cohort(name)
    with pytest.raises(KeyError, match="no shipped cohort"):
        cohort_module.load_cohort("nobody")


def test_a_cohort_of_another_dimension_leaves_the_search_raw(tmp_path):
    cohort = make_cohort(tmp_path)  # 16-d
    gallery = Gallery("teacher", 8)
    gallery.add("ann", unit(np.random.default_rng(3).normal(size=(1, 8))))
    gallery.use_scoring(Normalizer("asnorm", {"enc-lr": cohort}))
    assert gallery.scoring_for("enc-lr") == "raw" and gallery.identity_stats("ann") == {}
    (match,) = gallery.search(unit(np.ones((1, 8))), 1, [FaceRef("enc-lr", 16)])[0]
    assert match.raw is None
