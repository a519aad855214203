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


def test_common_component_pins_the_projection_and_keeps_the_rest():
    from lrface.models.students import CommonComponent

    torch.manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(50, 8) + 3.0, dim=1)
    common = CommonComponent(8)
    x = torch.randn(5, 8)
    assert torch.equal(common(x), x)  # no direction yet: pass-through
    common.set_direction(teacher)
    m, a = common.direction, common.projection
    assert torch.isclose(m.norm(), torch.tensor(1.0)) and 0.5 < a < 1.0
    out = common(x)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(out @ m, a.expand(5), atol=1e-5)
    across = x - (x @ m)[:, None] * m  # the part off the direction keeps its orientation
    assert torch.allclose(
        torch.nn.functional.cosine_similarity(out - a * m, across), torch.ones(5), atol=1e-5
    )


def test_compact_with_fixed_common_saves_the_direction():
    torch.manual_seed(0)
    model = create_student("compact", fix_common=True)
    model.common.set_direction(torch.randn(20, 128) + 2.0)
    state = model.state_dict()
    assert {"common.direction", "common.projection"} <= set(state)
    clone = create_student("compact", fix_common=True)
    clone.load_state_dict(state)
    x = torch.rand(3, 3, 16, 16) * 255
    assert torch.allclose(model.eval()(x), clone.eval()(x))


def test_folding_a_fused_student_for_inference_keeps_its_embeddings():
    from lrface.models.checkpoint import fold_for_inference
    from lrface.models.dlib_resnet import Affine
    from lrface.models.students import EnsembleStudent

    torch.manual_seed(0)
    members = [create_student("teacher-init", pretrained=False) for _ in range(2)]
    for member in members:  # trained affines are no longer the identity
        for module in member.modules():
            if isinstance(module, Affine):
                torch.nn.init.uniform_(module.weight, 0.5, 1.5)
                torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    model = EnsembleStudent(members).eval()
    x = torch.rand(2, 3, 150, 150) * 255
    with torch.no_grad():
        before = model(x)
        after = fold_for_inference(model)(x)
    assert not any(isinstance(m, Affine) for m in model.modules())
    assert torch.allclose(before, after, atol=1e-4)


def test_teacher_init_runs_at_a_smaller_input_down_to_its_floor():
    student = create_student("teacher-init", pretrained=False, input_size=104).eval()
    assert student.input_size == 104
    with torch.no_grad():
        out = student(torch.rand(2, 3, 16, 16) * 255)
    assert out.shape == (2, student.dim)
    with pytest.raises(ValueError, match="at least 104 px"):
        create_student("teacher-init", pretrained=False, input_size=96)
