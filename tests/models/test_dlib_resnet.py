"""The PyTorch port of dlib's face ResNet: parity with dlib, gradients, ONNX, file parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrface.data.images import load_rgb
from lrface.models.dlib_format import DlibFormatError, read_dlib_net
from lrface.models.dlib_resnet import DlibResNet, fuse_for_inference, load_dlib_resnet
from lrface.models.dlib_teacher import LANDMARK_MODEL, RECOGNITION_MODEL, model_file
from lrface.models.export import export_onnx, onnx_max_abs_diff
from tests.conftest import LFW_ROOT as LFW

needs_lfw = pytest.mark.skipif(
    LFW is None, reason="LFW not found (../shared/data/lfw or $LRFACE_LFW): parity needs real faces"
)
NUM_CHIPS = 4


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def model() -> DlibResNet:
    return load_dlib_resnet()


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    """Aligned chips of the first LFW images (sorted) in which dlib finds a face."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_file(LANDMARK_MODEL)))
    out = []
    for person in sorted(p for p in LFW.iterdir() if p.is_dir()):
        image = load_rgb(sorted(person.glob("*.jpg"))[0])
        faces = detector(image, 1)
        if faces:
            shape = predictor(image, faces[0])
            out.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        if len(out) == NUM_CHIPS:
            return np.stack(out)
    raise AssertionError("too few faces found in LFW")


@needs_lfw
def test_matches_dlib_on_lfw_chips(model: DlibResNet, chips: np.ndarray) -> None:
    import dlib

    recognizer = dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL)))
    reference = np.asarray(recognizer.compute_face_descriptor(list(chips)), dtype=np.float32)
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        plain = model(x).numpy()
        fused = fuse_for_inference(model)(x).numpy()
    assert cosine(plain, reference).min() >= 0.9999
    assert cosine(fused, reference).min() >= 0.9999
    np.testing.assert_allclose(plain, reference, atol=1e-4)


def test_shapes_and_features(model: DlibResNet) -> None:
    x = torch.rand(2, 3, 150, 150) * 255
    with torch.inference_mode():
        embedding, features = model(x, return_features=True)
    assert embedding.shape == (2, 128)
    assert [tuple(f.shape[1:]) for f in features] == [
        (32, 35, 35),
        (64, 17, 17),
        (128, 8, 8),
        (256, 2, 2),
    ]


def test_gradients_reach_first_conv_and_input(model: DlibResNet) -> None:
    x = (torch.rand(1, 3, 150, 150) * 255).requires_grad_(True)
    model.zero_grad()
    model(x).square().sum().backward()
    grad = model.conv1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    model.zero_grad()


def test_onnx_export_matches_torch(model: DlibResNet, tmp_path) -> None:
    path = export_onnx(model, tmp_path / "dlib_resnet.onnx")
    x = np.random.default_rng(0).uniform(0, 255, (3, 3, 150, 150)).astype(np.float32)
    assert onnx_max_abs_diff(path, model, x) < 1e-4  # batch 3 != the export example's 2


def test_parser_reads_the_whole_file() -> None:
    net = read_dlib_net(model_file(RECOGNITION_MODEL))
    assert net.input.attrs["nr"] == net.input.attrs["nc"] == 150
    assert np.allclose(net.input.attrs["mean"], (122.782, 117.001, 104.298), atol=1e-3)
    assert sum(layer.kind == "con" for layer in net.layers) == 29


@pytest.mark.parametrize(
    "make",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:-3],
        lambda data: b"",
        lambda data: bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)),
        lambda data: b"\x01\x01\x01\x05hello" + data[20:400],
    ],
    ids=["half", "last-bytes-missing", "empty", "random", "wrong-layer"],
)
def test_parser_rejects_bad_files(tmp_path, make) -> None:
    data = model_file(RECOGNITION_MODEL).read_bytes()
    bad = tmp_path / "bad_model.dat"
    bad.write_bytes(make(data))
    with pytest.raises(DlibFormatError, match="bad_model.dat"):
        load_dlib_resnet(bad)
