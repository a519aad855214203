import math

import pytest
import torch

from lrface.losses.base import TransferOutputs
from lrface.losses.guided import GuidedLoss


def two_class_loss(guide_weight: float = 1.0) -> GuidedLoss:
    loss = GuidedLoss(num_classes=2, dim=2, guide_weight=guide_weight, scale=1.0)
    with torch.no_grad():
        loss.classes.copy_(torch.eye(2))
    return loss


def test_hand_computed_value():
    hr, lr = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    outputs = TransferOutputs(
        student=lr, teacher=torch.zeros(1, 2), labels=torch.tensor([0]), hr_student=hr
    )
    # CE(hr): logits (1, 0); CE(lr): logits (0, 1); guidance |(0, 1) - (1, 0)|^2 = 2
    expected = math.log1p(math.exp(-1)) + math.log1p(math.exp(1)) + 0.5 * 2
    assert math.isclose(two_class_loss(0.5)(outputs).item(), expected, rel_tol=1e-6)


def test_guidance_moves_only_the_lr_branch():
    labels = torch.tensor([0, 1, 1])
    grads = {}
    for guide_weight in (0.0, 1.0):
        hr = torch.randn(3, 2, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        lr = torch.randn(3, 2, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
        outputs = TransferOutputs(
            student=lr, teacher=torch.zeros(3, 2), labels=labels, hr_student=hr
        )
        two_class_loss(guide_weight)(outputs).backward()
        grads[guide_weight] = (hr.grad, lr.grad)
    torch.testing.assert_close(grads[0.0][0], grads[1.0][0])  # HR: classification only
    assert not torch.allclose(grads[0.0][1], grads[1.0][1])  # LR: pulled by the guide


def test_requires_labels_and_hr_branch():
    loss = GuidedLoss(num_classes=3, dim=4)
    assert set(loss.needs) == {"labels", "hr_student"}
    with pytest.raises(ValueError):
        loss(TransferOutputs(student=torch.randn(2, 4), teacher=torch.randn(2, 4)))


def test_gradcheck():
    torch.manual_seed(3)
    loss = GuidedLoss(num_classes=3, dim=4).double()
    hr = torch.randn(5, 4, dtype=torch.double)
    labels = torch.tensor([0, 1, 2, 1, 0])
    lr = torch.randn(5, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s: loss(TransferOutputs(student=s, teacher=hr, labels=labels, hr_student=hr)),
        (lr,),
    )
