"""Shared fixtures: an isolated cache per test session, and the LFW root when present."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from lrface.paths import find_lfw

if "LRFACE_CACHE" not in os.environ:
    os.environ["LRFACE_CACHE"] = tempfile.mkdtemp(prefix="lrface-test-cache-")

LFW_ROOT = find_lfw()
needs_lfw = pytest.mark.skipif(
    LFW_ROOT is None,
    reason="LFW not found (../shared/data/lfw or $LRFACE_LFW); this test reads real LFW images",
)


@pytest.fixture
def lfw_root() -> Path:
    if LFW_ROOT is None:
        pytest.skip("LFW not found (../shared/data/lfw or $LRFACE_LFW)")
    return LFW_ROOT
