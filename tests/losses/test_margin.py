import math

import pytest
import torch

from lrface.losses.base import TransferOutputs
from lrface.losses.margin import ArcFaceLoss


def head(easy_margin: bool = False) -> ArcFaceLoss:
    loss = ArcFaceLoss(num_classes=2, dim=2, s=2.0, m=0.5, easy_margin=easy_margin)
    with torch.no_grad():
        loss.classes.copy_(torch.eye(2))
    return loss


def at(degrees: float) -> torch.Tensor:
    rad = math.radians(degrees)
    return torch.tensor([[math.cos(rad), math.sin(rad)]], dtype=torch.double)


LABEL0 = torch.tensor([0])


@pytest.mark.parametrize(
    ("degrees", "easy", "target"),
    [
        (30, False, math.cos(math.radians(30) + 0.5)),  # margin applied
        (120, False, math.cos(math.radians(120) + 0.5)),  # theta + m < pi: still applied
        (170, False, math.cos(math.radians(170)) - math.sin(0.5) * 0.5),  # past pi: fallback
        (30, True, math.cos(math.radians(30) + 0.5)),
        (120, True, math.cos(math.radians(120))),  # easy margin: none where cos <= 0
    ],
)
def test_target_logit_hand_values(degrees, easy, target):
    logits = head(easy).double().logits(at(degrees), LABEL0)
    other = math.sin(math.radians(degrees))  # cosine to class 1 is untouched
    torch.testing.assert_close(logits, torch.tensor([[2 * target, 2 * other]], dtype=torch.double))


def test_loss_is_cross_entropy_of_margin_logits_and_defaults():
    loss = head().double()
    outputs = TransferOutputs(student=3 * at(30), teacher=at(0), labels=LABEL0)
    a, b = 2 * math.cos(math.radians(30) + 0.5), 2 * math.sin(math.radians(30))
    expected = -a + math.log(math.exp(a) + math.exp(b))
    assert math.isclose(loss(outputs).item(), expected, rel_tol=1e-9)
    default = ArcFaceLoss(num_classes=5)
    assert (default.s, default.m, default.easy_margin, default.needs) == (
        30.0,
        0.5,
        False,
        ("labels",),
    )
    with pytest.raises(ValueError):
        default(TransferOutputs(student=torch.randn(2, 128), teacher=torch.randn(2, 128)))


def test_gradcheck():
    torch.manual_seed(0)
    loss = ArcFaceLoss(num_classes=4, dim=3, s=4.0).double()
    labels = torch.tensor([0, 3, 1])
    student = torch.randn(3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s: loss(TransferOutputs(student=s, teacher=s.detach(), labels=labels)), (student,)
    )
