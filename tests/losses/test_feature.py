import torch

from lrface.losses.base import TransferOutputs
from lrface.losses.feature import FeatureL2


def test_hand_computed_value():
    student = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    # row 0: (0.6, 0.8) - (1, 0) -> 0.16 + 0.64 = 0.8; row 1: same direction -> 0
    loss = FeatureL2()(TransferOutputs(student=student, teacher=teacher))
    torch.testing.assert_close(loss, torch.tensor(0.4))


def test_default_weight_and_teacher_is_a_fixed_target():
    loss_fn = FeatureL2()
    assert loss_fn.weight == 5.0
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    loss_fn(TransferOutputs(student=student, teacher=teacher)).backward()
    assert student.grad is not None and teacher.grad is None


def test_gradcheck():
    torch.manual_seed(0)
    student = torch.randn(3, 5, dtype=torch.double, requires_grad=True)
    teacher = torch.randn(3, 5, dtype=torch.double)
    loss_fn = FeatureL2()
    assert torch.autograd.gradcheck(
        lambda s: loss_fn(TransferOutputs(student=s, teacher=teacher)), (student,)
    )
