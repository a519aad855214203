"""The service's tests run most apps without their lifespan (``TestClient`` outside a ``with``),
so nothing calls their close: temporary folders they make go under each test's own tmp_path."""

from __future__ import annotations

import tempfile

import pytest


@pytest.fixture(autouse=True)
def _private_tempdir(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
