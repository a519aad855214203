import numpy as np

from lrface.data.chips import ChipSet
from lrface.data.degrade import EvalDegradation
from lrface.eval.embeddings import embed_chipset
from lrface.models.encoder import FaceEncoder


class CountingEncoder(FaceEncoder):
    """Embeds a chip as its mean colour; counts the chips it was asked to embed."""

    def __init__(self):
        super().__init__(batch_size=8)
        self.name, self.dim, self.input_size = "counting", 3, 16
        self.seen = 0

    def _embed_batch(self, chips: np.ndarray) -> np.ndarray:
        self.seen += len(chips)
        return chips.reshape(len(chips), -1, 3).mean(axis=1) + 1.0


def _chipset(align_key: str, value: int) -> ChipSet:
    chips = np.full((3, 16, 16, 3), value, np.uint8)
    chips[:, :, :, 0] = np.arange(3)[:, None, None] * 40
    names = [f"{i}.jpg" for i in range(3)]
    return ChipSet(chips, names, [f"{i:040x}" for i in range(3)], align_key=align_key)


def test_cache_serves_known_chips_and_embeds_only_new_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path))
    encoder, chipset = CountingEncoder(), _chipset("a", 100)
    first = embed_chipset(encoder, chipset, EvalDegradation(None), progress=False)
    assert encoder.seen == 3
    again = embed_chipset(encoder, chipset, EvalDegradation(None), progress=False)
    assert encoder.seen == 3 and np.array_equal(first, again)


def test_other_alignment_of_the_same_files_is_not_served_from_the_cache(tmp_path, monkeypatch):
    """Keys are the source files' sha1; chips cut with other settings must miss the cache."""
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path))
    encoder = CountingEncoder()
    first = embed_chipset(encoder, _chipset("a", 100), EvalDegradation(None), progress=False)
    other = embed_chipset(encoder, _chipset("b", 200), EvalDegradation(None), progress=False)
    assert encoder.seen == 6
    assert not np.allclose(first, other)
