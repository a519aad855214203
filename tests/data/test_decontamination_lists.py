"""Decontamination lists: the user's own (written by ``lrface decontaminate`` into the cache)
comes before the shipped, read-only one; a folder with neither is refused by name."""

from __future__ import annotations

import json

import pytest

from lrface.data import unlabelled


def test_the_users_list_comes_first_and_the_package_is_never_the_target(tmp_path, monkeypatch):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
    shipped = unlabelled.decontamination_path("utkface")
    assert shipped.parent == unlabelled.DECONTAMINATION_DIR and shipped.is_file()
    user = unlabelled.user_decontamination_path("utkface")
    assert user.is_relative_to(tmp_path / "cache")
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"dropped": [{"file": "a.jpg"}]}))
    assert unlabelled.decontamination_path("utkface") == user
    assert unlabelled.load_exclusions("utkface") == {"a.jpg"}
    with pytest.raises(FileNotFoundError, match="lrface decontaminate my/faces"):
        unlabelled.load_exclusions("faces", "my/faces")
