"""The test session's cache is temporary, whatever $LRFACE_CACHE said."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lrface.paths import cache_dir
from tests.conftest import TEST_CACHE, USER_CACHE


def test_tests_never_write_into_the_users_cache():
    assert cache_dir() == TEST_CACHE != USER_CACHE
    assert TEST_CACHE.is_relative_to(Path(tempfile.gettempdir()))


def test_weights_and_caches_follow_the_umask(tmp_path):
    import os

    import numpy as np
    import torch

    from lrface.eval.embeddings import save_keyed
    from lrface.train.checkpoint import _save_tensors

    expected = 0o666 & ~_umask()
    save_keyed(tmp_path / "cache.safetensors", {bytes(20): np.zeros(4, np.float32)})
    _save_tensors({"w": torch.zeros(2)}, tmp_path / "student.safetensors")
    for name in ("cache.safetensors", "student.safetensors"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == expected, name


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_missing_shared_video_names_where_it_was_looked_for(tmp_path, monkeypatch):
    import pytest

    from lrface.paths import DatasetNotFoundError, shared_video

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"no-such\.mp4 was not found \(looked in"):
        shared_video("no-such.mp4")
