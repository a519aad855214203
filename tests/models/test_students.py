"""Students: registry, shapes, input sizes, teacher-init's relation to the teacher."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lrface.models.students import create_student, list_students, register_student


def test_registry_lists_and_refuses():
    assert {"compact", "teacher-init"} <= set(list_students())
    with pytest.raises(KeyError, match="unknown student"):
        create_student("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_student("compact")(lambda: None)


@pytest.mark.parametrize("size", [8, 13, 32, 48])
def test_compact_any_input_size_gives_embeddings(size):
    torch.manual_seed(0)
    model = create_student("compact").eval()
    out = model(torch.rand(3, 3, size, size) * 255)
    assert out.shape == (3, 128) and torch.isfinite(out).all()
    assert model.input_size == 32 and model.supports_features


def test_compact_is_small_and_trainable():
    torch.manual_seed(0)
    model = create_student("compact")
    params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= params <= 3_000_000
    out = model(torch.rand(4, 3, 32, 32) * 255)
    out.pow(2).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_compact_stage_features_have_the_teacher_widths_at_the_hint_grids():
    from lrface.train.teacher_maps import HINT_GRIDS

    torch.manual_seed(0)
    model = create_student("compact").eval()
    x = torch.rand(2, 3, 16, 16) * 255
    emb, features = model(x, return_features=True)
    assert torch.equal(emb, model(x))
    assert [f.shape[1:] for f in features] == [
        (c, g, g) for c, g in zip(model.feature_channels, HINT_GRIDS, strict=True)
    ]
    teacher_init = create_student("teacher-init", pretrained=False)
    assert model.feature_channels == teacher_init.feature_channels


def test_teacher_init_shapes_and_affine_option():
    torch.manual_seed(0)
    model = create_student("teacher-init", pretrained=False)
    emb, features = model(torch.rand(2, 3, 16, 16) * 255, return_features=True)
    assert emb.shape == (2, 128) and model.input_size == 150 and model.supports_features
    assert [f.shape[1:] for f in features] == [(32, 35, 35), (64, 17, 17), (128, 8, 8), (256, 2, 2)]
    affine = [p for n, p in model.named_parameters() if ".bn" in n]
    assert affine and all(p.requires_grad for p in affine)
    frozen = create_student("teacher-init", pretrained=False, freeze_affine=True)
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if ".bn" in n)
    assert all(p.requires_grad for n, p in frozen.named_parameters() if "conv" in n)


@pytest.mark.skipif(
    importlib.util.find_spec("face_recognition_models") is None, reason="no dlib weights"
)
def test_teacher_init_starts_as_the_teacher():
    from lrface.models.dlib_resnet import load_dlib_resnet

    student = create_student("teacher-init").eval()
    teacher = load_dlib_resnet()
    x = torch.rand(2, 3, 150, 150) * 255
    with torch.no_grad():
        assert torch.equal(student(x), teacher(x))
        # an LR input is the teacher's view of the bicubic-upsampled face
        small = torch.rand(2, 3, 16, 16) * 255
        up = torch.nn.functional.interpolate(small, size=150, mode="bicubic").clamp(0, 255)
        assert torch.allclose(student(small), teacher(up))
