"""MTCNN for the detection tests: built once, or the tests skip with the reason."""

from __future__ import annotations

import pytest
import torch

from lrface.detect.weights import WeightsUnavailableError


@pytest.fixture(scope="session")
def mtcnn():
    from lrface.detect.mtcnn import MTCNN

    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest and fair to neighbours
    try:
        return MTCNN(min_face=12)
    except WeightsUnavailableError as exc:
        pytest.skip(f"MTCNN weights cannot be fetched (no network?): {exc}")
