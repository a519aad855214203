import numpy as np
import pytest

from lrface.data.decontaminate import best_matches, impostor_threshold


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_planted_duplicate_is_found_above_the_threshold():
    rng = np.random.default_rng(0)
    reference = _unit(rng.normal(size=(300, 128)))
    identities = np.repeat(np.arange(100), 3)
    query = _unit(rng.normal(size=(50, 128)))
    query[7] = _unit(reference[123:124] + 0.01 * rng.normal(size=(1, 128)))[0]
    threshold = impostor_threshold(reference, identities, far=1e-5)
    index, score = best_matches(query, reference, chunk=16)
    dropped = np.flatnonzero(score >= threshold)
    assert list(dropped) == [7] and index[7] == 123


def test_impostor_threshold_counts_each_different_pair_once():
    # four people of one image each on a line: the impostor scores are known by hand
    emb = _unit(np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, 1.0]]))
    sims = emb @ emb.T
    expected = sorted(sims[np.triu_indices(4, 1)])
    assert impostor_threshold(emb, np.arange(4), far=1 / 6) == pytest.approx(expected[-1])
    assert impostor_threshold(emb, np.arange(4), far=2 / 6) == pytest.approx(expected[-2])
    # the same person's pair (rows 0 and 1) is not an impostor pair
    same = np.array([0, 0, 1, 2])
    rest = sorted(
        sims[i, j] for i, j in zip(*np.triu_indices(4, 1), strict=True) if (i, j) != (0, 1)
    )
    assert impostor_threshold(emb, same, far=1 / 5) == pytest.approx(rest[-1])
