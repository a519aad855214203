"""Cached teacher stage maps: shapes, the mirrored view, the cache, standardization."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrface.data.chips import ChipSet
from lrface.models.dlib_resnet import DlibResNet
from lrface.models.encoder import TorchEncoder
from lrface.train import teacher_maps
from lrface.train.teacher_maps import HINT_GRIDS, standardize_channels, teacher_stage_maps


@pytest.fixture
def encoder() -> TorchEncoder:
    torch.manual_seed(0)
    return TorchEncoder(DlibResNet(), "random-dlib", input_size=150, dim=128)


def _chipset(n: int = 3, align_key: str = "a") -> ChipSet:
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (n, 150, 150, 3), dtype=np.uint8)
    return ChipSet(
        chips, [f"{i}.jpg" for i in range(n)], [f"{i:040x}" for i in range(n)], align_key=align_key
    )


def test_maps_are_pooled_stage_outputs_of_the_chip_and_its_mirror(tmp_path, monkeypatch, encoder):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path))
    chipset = _chipset()
    maps = teacher_stage_maps(encoder, chipset, (1, 3), progress=False)
    assert [m.shape for m in maps] == [(3, 2, 64, 8, 8), (3, 2, 256, 2, 2)]
    assert all(m.dtype == np.float16 for m in maps)
    x = torch.from_numpy(chipset.chips[1:2]).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        _, mirrored = encoder.module(x.flip(-1), return_features=True)
    expected = F.adaptive_avg_pool2d(mirrored[1], HINT_GRIDS[1]).numpy()[0]
    np.testing.assert_allclose(maps[0][1, 1], expected, rtol=2e-3, atol=2e-3)
    assert not np.allclose(maps[0][1, 0], maps[0][1, 1], atol=1e-2)


def test_cache_serves_known_chips_and_separates_alignments(tmp_path, monkeypatch, encoder):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path))
    first = teacher_stage_maps(encoder, _chipset(), (2,), progress=False)
    computed = []
    real = teacher_maps._maps_of

    def counting(enc, chips, stages):
        computed.append(len(chips))
        return real(enc, chips, stages)

    monkeypatch.setattr(teacher_maps, "_maps_of", counting)
    again = teacher_stage_maps(encoder, _chipset(), (2,), progress=False)
    assert computed == [] and np.array_equal(first[0], again[0])
    teacher_stage_maps(encoder, _chipset(4), (2,), progress=False)
    assert computed == [1]  # only the new chip
    teacher_stage_maps(encoder, _chipset(align_key="b"), (2,), progress=False)
    assert computed == [1, 3]  # other alignment: nothing served


def test_bad_stage_or_chip_size_is_refused(tmp_path, monkeypatch, encoder):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="stages are 0..3"):
        teacher_stage_maps(encoder, _chipset(), (4,), progress=False)
    small = ChipSet(np.zeros((1, 32, 32, 3), np.uint8), ["x.jpg"], ["0" * 40])
    with pytest.raises(ValueError, match="32 px"):
        teacher_stage_maps(encoder, small, (0,), progress=False)


def test_standardize_channels():
    rng = np.random.default_rng(0)
    maps = (rng.normal(size=(20, 2, 3, 2, 2)) * [[[[5.0]], [[0.1]], [[0.0]]]] + 7).astype(
        np.float16
    )
    out = standardize_channels(maps).astype(np.float32)
    assert out.dtype == np.float32 and out.shape == maps.shape
    np.testing.assert_allclose(out.mean(axis=(0, 1, 3, 4)), 0, atol=1e-2)
    np.testing.assert_allclose(out.std(axis=(0, 1, 3, 4))[:2], 1, atol=1e-2)
    assert np.all(out[:, :, 2] == 0)  # a constant channel stays finite
