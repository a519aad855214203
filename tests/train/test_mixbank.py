"""Blended faces: the blend, the drawn pairs, the teacher targets and the cache."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.data.chips import ChipSet
from lrface.models.encoder import TorchEncoder
from lrface.train.mixbank import blend, build_mix_bank, draw_blends
from tests.train.synthetic import FakeTeacher, synthetic_chips


class CountingEncoder(TorchEncoder):
    """The fake teacher as an encoder that counts the faces it embeds."""

    def __init__(self):
        super().__init__(FakeTeacher(), "fake-teacher", input_size=150, dim=128)
        self.faces = 0

    def _embed_batch(self, chips):
        self.faces += len(chips)
        return super()._embed_batch(chips)


def chipset(n: int = 10) -> ChipSet:
    chips = synthetic_chips(n)
    keys = [f"{i:040x}" for i in range(n)]
    return ChipSet(chips, [f"p/{i}.jpg" for i in range(n)], keys, {}, set(), align_key="test")


def test_blend_weights_and_rounds():
    a = np.full((2, 2, 3), 200, np.uint8)
    b = np.full((2, 2, 3), 101, np.uint8)
    assert blend(a, b, 0.5)[0, 0, 0] == 150  # 150.5 rounds to even
    assert blend(a, b, 1.0)[0, 0, 0] == 200 and blend(a, b, 0.0)[0, 0, 0] == 101
    assert blend(a, b, 0.25).dtype == np.uint8


def test_draws_are_distinct_pairs_in_range_and_seeded():
    first, second, alpha = draw_blends(5, 1000, seed=2, alpha_range=(0.3, 0.7))
    assert np.all(first != second) and first.max() < 5 and second.max() < 5
    assert alpha.min() >= 0.3 and alpha.max() <= 0.7
    again = draw_blends(5, 1000, seed=2, alpha_range=(0.3, 0.7))
    assert all(np.array_equal(x, y) for x, y in zip((first, second, alpha), again, strict=True))
    assert not np.array_equal(first, draw_blends(5, 1000, seed=3, alpha_range=(0.3, 0.7))[0])
    with pytest.raises(ValueError, match="alpha"):
        draw_blends(5, 10, seed=0, alpha_range=(0.8, 0.2))
    with pytest.raises(ValueError, match="two"):
        draw_blends(1, 10, seed=0, alpha_range=(0.3, 0.7))


def test_targets_are_the_teachers_flip_averaged_embeddings_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path))
    chips, teacher = chipset(), CountingEncoder()
    bank = build_mix_bank(teacher, chips, count=7, seed=1, progress=False)
    assert len(bank) == 7 and teacher.faces == 14  # each blend and its mirror image
    for k in (0, 6):
        expected = teacher.embed(bank.chip(chips.chips, k)[None], flip=True)[0]
        np.testing.assert_allclose(bank.teacher_emb[k], expected, rtol=1e-5, atol=1e-6)
    teacher.faces = 0
    again = build_mix_bank(teacher, chips, count=7, seed=1, progress=False)
    assert teacher.faces == 0  # served from the cache
    np.testing.assert_array_equal(again.teacher_emb, bank.teacher_emb)
    build_mix_bank(teacher, chips, count=7, seed=2, progress=False)
    assert teacher.faces == 14  # another seed is another bank
