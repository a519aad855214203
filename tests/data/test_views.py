import numpy as np
import pytest

from lrface.data.chips import ChipSet
from lrface.data.views import TeacherViews, make_view, make_views, teacher_views
from lrface.models.encoder import FaceEncoder


def _chips(n: int = 4, size: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


class MeanColourEncoder(FaceEncoder):
    """Counts its calls; embeds a chip as its mean colour."""

    def __init__(self):
        super().__init__(batch_size=8)
        self.name, self.dim, self.input_size = "mean-colour", 3, 40
        self.calls = 0

    def _embed_batch(self, chips: np.ndarray) -> np.ndarray:
        self.calls += 1
        return chips.reshape(len(chips), -1, 3).mean(axis=1).astype(np.float32) + 1.0


def test_view_is_a_pure_function_of_spec_row_and_k():
    chips, spec = _chips(), TeacherViews(count=2)
    first = make_view(chips, 1, 1, spec)
    assert first.shape == chips.shape[1:] and first.dtype == np.uint8
    assert np.array_equal(first, make_view(chips, 1, 1, spec))
    assert not np.array_equal(first, make_view(chips, 1, 2, spec))
    assert not np.array_equal(first, make_view(chips, 1, 1, TeacherViews(count=2, seed=1)))


def test_identity_spec_returns_the_chip():
    chips = _chips()
    spec = TeacherViews(
        count=1, mix_prob=0.0, shift=0.0, scale=0.0, degrees=0.0,
        brightness=0.0, contrast=0.0, saturation=0.0, gray_prob=0.0,
    )  # fmt: skip
    assert np.array_equal(make_view(chips, 2, 1, spec), chips[2])


def test_mixing_blends_in_another_chip_with_at_most_mix_max():
    chips = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 200)])
    spec = TeacherViews(
        count=1, mix_prob=1.0, mix_max=0.4, shift=0.0, scale=0.0, degrees=0.0,
        brightness=0.0, contrast=0.0, saturation=0.0, gray_prob=0.0,
    )  # fmt: skip
    for seed in range(5):
        view = make_view(chips, 0, 1, TeacherViews(**{**spec.to_dict(), "seed": seed}))
        assert 0 < view.mean() <= 0.4 * 200 + 1


def test_make_views_orders_view_k_of_every_chip_together():
    chips, spec = _chips(3), TeacherViews(count=2)
    views = make_views(chips, spec)
    assert views.shape == (6, *chips.shape[1:])
    assert np.array_equal(views[3 + 1], make_view(chips, 1, 2, spec))


def test_bad_specs_are_rejected():
    with pytest.raises(ValueError, match="count"):
        TeacherViews(count=-1)
    with pytest.raises(ValueError, match="mix_max"):
        TeacherViews(mix_max=0.7)


def test_teacher_embeddings_of_views_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path))
    chips, spec = _chips(), TeacherViews(count=2)
    chipset = ChipSet(chips, [f"{i}.jpg" for i in range(4)], [f"{i:040x}" for i in range(4)])
    encoder = MeanColourEncoder()
    views, emb = teacher_views(encoder, chipset, spec, flip=False, progress=False)
    assert emb.shape == (8, 3) and encoder.calls > 0
    assert np.allclose(emb, encoder.embed(views))
    calls = encoder.calls
    again, cached = teacher_views(encoder, chipset, spec, flip=False, progress=False)
    assert encoder.calls == calls
    assert np.array_equal(again, views) and np.array_equal(cached, emb)
    chipset.align_key = "other-alignment"  # same files, other chips: a different entry
    teacher_views(encoder, chipset, spec, flip=False, progress=False)
    assert encoder.calls > calls
