"""ONNX Runtime encoders: same embeddings as PyTorch, same identity, exported once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrface.models.encoder import TorchEncoder
from lrface.models.onnx_encoder import OnnxEncoder, onnx_file, with_runtime
from lrface.models.students import create_student


@pytest.fixture
def encoder(tmp_path, monkeypatch) -> TorchEncoder:
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    enc = TorchEncoder(create_student("compact"), "compact", 32, 128, key="compact-abc")
    enc.teacher, enc.size_cutoff = "dlib-resnet-torch", 18.0
    return enc


def test_onnx_embeddings_match_torch_and_keep_the_encoder_s_identity(encoder):
    chips = np.random.default_rng(0).integers(0, 256, (5, 20, 20, 3), dtype=np.uint8)
    onnx = with_runtime(encoder, "onnx")
    assert isinstance(onnx, OnnxEncoder)
    np.testing.assert_allclose(onnx.embed(chips), encoder.embed(chips), atol=1e-5)
    assert (onnx.name, onnx.cache_key, onnx.input_size, onnx.dim) == (
        "compact",
        "compact-abc",
        32,
        128,
    )
    assert (onnx.teacher, onnx.size_cutoff) == ("dlib-resnet-torch", 18.0)


def test_the_export_is_made_once_per_weights(encoder):
    path = onnx_file(encoder)
    stamp = path.stat().st_mtime_ns
    OnnxEncoder(encoder)
    assert onnx_file(encoder) == path and path.stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir()] == ["compact-abc.onnx"]  # no temp file left


def test_torch_runtime_and_unknown_runtime(encoder):
    assert with_runtime(encoder, "torch") is encoder
    assert with_runtime(None, "onnx") is None
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        with_runtime(encoder, "tensorrt")


def test_a_damaged_cached_export_is_made_again(encoder):
    path = onnx_file(encoder)
    path.write_bytes(b"not an onnx model")
    chips = np.random.default_rng(0).integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    np.testing.assert_allclose(OnnxEncoder(encoder).embed(chips), encoder.embed(chips), atol=1e-5)
    assert path.stat().st_size > 1000
