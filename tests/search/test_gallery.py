"""Gallery: add/search/remove/reload, atomic saves, and clear errors for foreign files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lrface.search import gallery as gallery_mod
from lrface.search.gallery import Gallery, GalleryError


def _unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def people() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = _unit(rng, 4)
    return {
        name: centres[i] + 0.1 * rng.normal(size=(3, 16)).astype(np.float32)
        for i, name in enumerate(["ann", "bob", "cy", "dee"])
    }


def test_round_trip_add_search_remove_reload(tmp_path, people):
    g = Gallery("enc-a", 16)
    for name, emb in people.items():
        g.add(name, emb[:2], [f"{name}/{i}.jpg" for i in range(2)])
    g.add("dee", people["dee"][2:], ["dee/2.jpg"])  # a second enrolment adds to the identity
    assert g.names == ["ann", "bob", "cy", "dee"]
    assert len(g.identity("dee").embeddings) == 3
    mean = people["dee"].mean(0)
    np.testing.assert_allclose(g.identity("dee").template, mean / np.linalg.norm(mean), atol=1e-6)

    probes = np.stack([people[n][2] for n in ["ann", "bob", "cy"]])
    assert [r[0].name for r in g.search(probes, k=2)] == ["ann", "bob", "cy"]
    top = g.search(probes[:1], k=10)[0]
    assert len(top) == 4 and all(a.score >= b.score for a, b in zip(top, top[1:], strict=False))

    path = tmp_path / "g.safetensors"
    g.save(path)
    assert path.stat().st_mode & 0o777 == 0o600  # biometric data, as the SQLite store
    loaded = Gallery.load(path)
    assert loaded.names == g.names and loaded.encoder == "enc-a" and loaded.dim == 16
    assert loaded.identity("dee").sources == ["dee/0.jpg", "dee/1.jpg", "dee/2.jpg"]
    for a, b in zip(loaded.search(probes, 4), g.search(probes, 4), strict=True):
        assert [m.name for m in a] == [m.name for m in b]
        np.testing.assert_allclose([m.score for m in a], [m.score for m in b], atol=1e-6)

    loaded.remove("ann")
    assert "ann" not in loaded and loaded.search(probes[:1], 1)[0][0].name != "ann"
    loaded.add("eve", people["ann"])  # new ids never reuse a removed one
    loaded.save(path)
    again = Gallery.load(path)
    assert again.names == ["bob", "cy", "dee", "eve"]
    assert again.search(probes[:1], 1)[0][0].name == "eve"
    with pytest.raises(KeyError, match="ann"):
        again.remove("ann")


def test_empty_gallery_saves_and_searches(tmp_path):
    path = tmp_path / "empty.safetensors"
    Gallery("enc", 8).save(path)
    g = Gallery.load(path)
    assert len(g) == 0 and g.search(np.ones((2, 8)), 5) == [[], []]


def test_failed_save_leaves_the_previous_gallery(tmp_path, people, monkeypatch):
    path = tmp_path / "g.safetensors"
    g = Gallery("enc-a", 16)
    g.add("ann", people["ann"])
    g.save(path)
    before = path.read_bytes()

    g.add("bob", people["bob"])

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(gallery_mod.os, "fsync", crash)  # dies after writing the temp file
    with pytest.raises(OSError, match="simulated"):
        g.save(path)
    monkeypatch.undo()
    monkeypatch.setattr(gallery_mod.os, "replace", crash)  # dies at the rename
    with pytest.raises(OSError, match="simulated"):
        g.save(path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert Gallery.load(path).names == ["ann"]
    assert os.listdir(tmp_path) == ["g.safetensors"]  # no temp file left behind
    g.save(path)
    assert Gallery.load(path).names == ["ann", "bob"]


def test_other_encoder_or_dim_is_refused_naming_the_file(tmp_path, people):
    path = tmp_path / "g.safetensors"
    g = Gallery("enc-a", 16)
    g.add("ann", people["ann"])
    g.save(path)
    loaded = Gallery.load(path)
    loaded.check_compatible("enc-a", 16, path)
    with pytest.raises(GalleryError, match=r"g\.safetensors.*512-d"):
        loaded.check_compatible("enc-a", 512, path)
    with pytest.raises(GalleryError, match=r"g\.safetensors.*enrolled with encoder enc-a"):
        loaded.check_compatible("enc-b", 16, path)
    with pytest.raises(ValueError):
        g.add("x", np.ones((1, 8), np.float32) * np.nan)


def test_foreign_files_give_clear_errors(tmp_path, people):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(GalleryError, match="junk.safetensors: not an lrface gallery"):
        Gallery.load(junk)
    with pytest.raises(GalleryError, match="no such gallery file"):
        Gallery.load(tmp_path / "missing.safetensors")

    path = tmp_path / "future.safetensors"
    g = Gallery("enc-a", 16)
    g.add("ann", people["ann"])
    g.save(path)
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["lrface_gallery"])
    meta["format_version"] = 99
    header["__metadata__"]["lrface_gallery"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + size :])
    with pytest.raises(GalleryError, match=r"future\.safetensors: gallery format version 99"):
        Gallery.load(path)


def test_a_large_gallery_switches_to_ivf_and_still_adds_removes_and_finds(monkeypatch, caplog):
    monkeypatch.setattr("lrface.search.gallery.APPROXIMATE_FROM", 3000)
    rng = np.random.default_rng(0)
    templates = rng.normal(size=(3000, 16)).astype(np.float32)
    gallery = Gallery("enc", 16)
    for i, t in enumerate(templates):
        gallery.add(f"id{i}", t[None])
    small = Gallery("enc", 16)
    small.add("x", templates[:1])
    assert small.choose_index() == "flat (exact)"
    with caplog.at_level("INFO", logger="lrface.search"):
        kind = gallery.choose_index()
    assert kind.startswith("IVF64 nprobe=16 (approximate") and "3000 identities" in caplog.text
    probes = templates[:200] + 0.3 * rng.normal(size=(200, 16)).astype(np.float32)
    found = [row[0].name for row in gallery.search(probes, 5)]
    assert np.mean([f == f"id{i}" for i, f in enumerate(found)]) > 0.95
    gallery.remove("id0")
    gallery.add("new", templates[0][None])
    assert gallery.search(templates[:1], 1)[0][0].name == "new" and len(gallery) == 3000
