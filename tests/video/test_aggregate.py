"""Track pooling weights: the quality weighting discounts a view that disagrees with the rest."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.video.aggregate import WEIGHTINGS, aggregate, agreement, face_weights


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_quality_discounts_the_view_that_disagrees():
    rng = np.random.default_rng(0)
    person = unit(rng.normal(size=32))
    views = unit(person + 0.3 * rng.normal(size=(6, 32)) / np.sqrt(32))
    stray = unit(rng.normal(size=32))  # a detection of something else, large and confident
    embeddings = np.vstack([views, stray])
    widths = np.array([20, 20, 20, 20, 20, 20, 60.0])
    scores = np.ones(7)
    agree = agreement(embeddings, widths * scores)
    assert agree[-1] < 0.3 and (agree[:-1] > 0.7).all()
    quality = face_weights(widths, scores, "quality", embeddings)
    plain = face_weights(widths, scores, "size-score")
    assert quality[-1] / quality[0] < plain[-1] / plain[0]
    pooled_q, pooled_p = aggregate(embeddings, quality), aggregate(embeddings, plain)
    assert float(pooled_q @ person) > float(pooled_p @ person)
    # without embeddings (or with one face) it is size-score
    assert np.allclose(face_weights(widths, scores, "quality"), plain)
    assert np.allclose(agreement(embeddings[:1], widths[:1]), [1.0])
    assert "quality" in WEIGHTINGS
    with pytest.raises(ValueError, match="unknown weighting"):
        face_weights(widths, scores, "bogus")
