"""Shared fixtures: a temporary cache for every test session, and the LFW root when present."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from lrface.paths import DatasetNotFoundError, resolve_lfw

# Tests write fake embeddings, detections and weights: never into the user's cache, even when
# $LRFACE_CACHE points at it. The MTCNN weights are the one thing reused (copied, not linked):
# they are checked against pinned sha256 sums on load, and fetching them needs the network.
USER_CACHE = Path(os.environ.get("LRFACE_CACHE", Path.home() / ".cache" / "lrface"))
TEST_CACHE = Path(tempfile.mkdtemp(prefix="lrface-test-cache-"))
os.environ["LRFACE_CACHE"] = str(TEST_CACHE)
if (USER_CACHE / "mtcnn").is_dir():
    shutil.copytree(USER_CACHE / "mtcnn", TEST_CACHE / "mtcnn")


def pytest_unconfigure(config) -> None:
    """The session's cache goes with the session (it holds a copy of the MTCNN weights)."""
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


def find_lfw() -> Path | None:
    """The default LFW root if present, else None (tests that need it skip)."""
    try:
        return resolve_lfw()
    except DatasetNotFoundError:
        return None


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


@pytest.fixture(scope="session")
def postgres_cluster():
    """One throw-away PostgreSQL server for the session (``tests.pg_cluster``); skips with the
    reason where PostgreSQL or psycopg is missing."""
    from tests.pg_cluster import start_cluster

    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster) -> str:
    """The URL of a new, empty database of the session's cluster."""
    return postgres_cluster.database()
