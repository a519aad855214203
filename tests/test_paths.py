"""The test session's cache is temporary, whatever $LRFACE_CACHE said."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lrface.paths import cache_dir
from tests.conftest import TEST_CACHE, USER_CACHE


def test_tests_never_write_into_the_users_cache():
    assert cache_dir() == TEST_CACHE != USER_CACHE
    assert TEST_CACHE.is_relative_to(Path(tempfile.gettempdir()))
