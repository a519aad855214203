"""Fixtures for the training tests (helpers live in ``tests.train.synthetic``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train.synthetic import synthetic_data


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core box, OpenMP spinning makes 2 threads far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hr_chips, teacher_emb, labels)`` for 96 faces of 12 identities."""
    return synthetic_data()
