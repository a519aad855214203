"""The commands wired to the fake detector and encoders of tests/test_pipeline.py."""

from __future__ import annotations

import cv2
import pytest
from typer.testing import CliRunner

from lrface.cli import app, common, photos
from tests.test_pipeline import ColourEncoder, SquareDetector, scene


@pytest.fixture
def cli(monkeypatch):
    """The pipeline commands wired to the fake detector and encoders."""
    encoders = {
        "teacher": ColourEncoder("teacher"),
        "other": ColourEncoder("other"),
        "lrface-lr-v2": ColourEncoder("lrface-lr-v2", input_size=32),  # the shipped default
    }
    for module in (common, photos):  # photos.detect builds its detector itself
        monkeypatch.setattr(module, "make_detector", lambda *a, **k: SquareDetector())
    monkeypatch.setattr(common, "load_encoder", lambda name, *a, **k: encoders[name])
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def _photo(path, *squares):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(scene(*squares), cv2.COLOR_RGB2BGR))


def photo(path, *squares):
    """A PNG of coloured squares (each a face to ``SquareDetector``) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(scene(*squares), cv2.COLOR_RGB2BGR))
