import pytest
import torch

from lrface.losses import (
    LOSSES,
    METHODS,
    TransferOutputs,
    build_losses,
    parse_method,
)
from lrface.losses.adversarial import ADDALoss
from lrface.losses.contrastive import InfoNCE
from lrface.losses.feature import FeatureL2


def batch(n: int = 6, dim: int = 8, classes: int = 3) -> TransferOutputs:
    torch.manual_seed(0)
    return TransferOutputs(
        student=torch.randn(n, dim, requires_grad=True),
        teacher=torch.randn(n, dim),
        student_features=[torch.rand(n, 4, 4, 4)],
        teacher_features=[torch.rand(n, 6, 2, 2)],
        teacher_maps={0: torch.randn(n, 6, 2, 2)},
        labels=torch.arange(n) % classes,
        hr_student=torch.randn(n, dim, requires_grad=True),
        progress=0.5,
    )


def test_names():
    assert set(LOSSES) == {
        "l2",
        "nst",
        "mmd",
        "darkrank",
        "contrastive",
        "dann",
        "adda",
        "guided",
        "arcface",
        "prototype",
        "hint",
        "askd",
        "fused",
    }
    assert METHODS["l2"] == {"l2": {"weight": 5.0}}
    assert METHODS["adda"] == {"adda": {"weight": 1.0}}


def test_parse_method():
    assert parse_method("darkrank+l2") == {"darkrank": {"weight": 16.0}, "l2": {"weight": 5.0}}
    assert parse_method("mmd+contrastive") == {"mmd": {}, "contrastive": {}}
    weighted = {"l2": {"weight": 5.0}, "darkrank": {"weight": 16.0}}
    assert parse_method("l2=5, darkrank=16") == weighted
    assert parse_method("adda+l2=2") == {"adda": {}, "l2": {"weight": 2.0}}
    parsed = parse_method("l2")
    parsed["l2"]["weight"] = 0.0
    assert METHODS["l2"]["l2"]["weight"] == 5.0  # a copy, not the table itself
    with pytest.raises(KeyError):
        parse_method("l2+nope")
    with pytest.raises(ValueError):
        parse_method("l2+l2=3")


def test_build_losses_defaults_overrides_and_shared_kwargs():
    losses = build_losses(
        {"l2": {}, "darkrank": {"weight": 4.0, "variant": "listmle"}, "guided": {}},
        num_classes=7,
        dim=8,
    )
    assert isinstance(losses["l2"], FeatureL2) and losses["l2"].weight == 5.0
    assert losses["darkrank"].weight == 4.0 and losses["darkrank"].variant == "listmle"
    assert losses["guided"].classes.shape == (7, 8)
    with pytest.raises(KeyError):
        build_losses({"nope": {}})


def test_total_loss_is_the_weighted_sum():
    outputs = batch()
    losses = build_losses({"l2": {"weight": 2.0}, "contrastive": {"weight": 0.5}})
    total, parts = losses.total(outputs)
    l2 = FeatureL2()(outputs).item()
    nce = InfoNCE()(outputs).item()
    assert parts["l2"] == pytest.approx(l2) and parts["contrastive"] == pytest.approx(nce)
    assert total.item() == pytest.approx(2.0 * l2 + 0.5 * nce)
    assert parts["total"] == pytest.approx(total.item())


def test_the_fields_and_stages_the_losses_read_are_known_once_built():
    assert build_losses(parse_method("adda+l2")).fields == set()
    assert build_losses(parse_method("nst+l2")).fields == {
        "student_features",
        "teacher_features",
    }
    spec = {"guided": {}, "arcface": {}}
    assert build_losses(spec, num_classes=3).fields == {"labels", "hr_student"}
    hint = build_losses(parse_method("hint+l2"))
    assert hint.fields == {"student_features", "teacher_maps"}
    assert hint.stages == (1, 2, 3) and build_losses({"l2": {}}).stages == ()


def test_loss_parameters_leave_adda_to_its_own_optimizer():
    losses = build_losses({"dann": {}, "adda": {}, "arcface": {}}, num_classes=3)
    trained = {id(p) for p in losses.trainable_parameters()}
    assert all(id(p) in trained for p in losses["dann"].parameters())
    assert all(id(p) in trained for p in losses["arcface"].parameters())
    assert not any(id(p) in trained for p in losses["adda"].parameters())


def test_discriminator_steps_update_adda_and_report():
    losses = build_losses({"adda": {"dim": 8}, "l2": {}})
    before = [p.detach().clone() for p in losses["adda"].parameters()]
    metrics = losses.discriminator_steps(batch())
    assert set(metrics) == {"adda_disc_loss", "adda_disc_accuracy"}
    after = list(losses["adda"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert isinstance(losses["adda"], ADDALoss)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_builds_and_backpropagates(method):
    outputs = batch()
    spec = parse_method(method)
    if "hint" in spec:  # one stage, shaped like batch()'s features
        spec["hint"].update(stages=[0], student_channels=[4], teacher_channels=[6])
    if "askd" in spec:  # batch()'s student and teacher maps differ in channels
        spec["askd"].update(channel=False)
    losses = build_losses(spec, num_classes=3, dim=8, prototypes=torch.eye(3, 8))
    losses.discriminator_steps(outputs)
    total, parts = losses.total(outputs)
    total.backward()
    assert torch.isfinite(total) and set(parts) == set(losses) | {"total"}
    assert outputs.student.grad is not None and torch.isfinite(outputs.student.grad).all()
