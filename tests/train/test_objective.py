"""The objective hands the student's own LR input to losses that ask for it (fused targets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrface.losses.methods import build_losses
from lrface.models.students import create_student
from lrface.train.objective import Objective


class ColourPair(nn.Module):
    """A frozen stand-in for a fused pair: a fixed projection of the input's mean colour."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Linear(3, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x.mean((2, 3)))


def test_fused_loss_sees_the_batch_the_student_saw():
    torch.manual_seed(0)
    student = create_student("compact")
    pair = ColourPair(student.dim)
    objective = Objective(student, build_losses({"fused": {"weight": 1.0, "network": pair}}))
    lr = torch.rand(4, 3, student.input_size, student.input_size) * 255
    total, parts = objective(lr, torch.randn(4, student.dim), torch.arange(4), None, 0.0)
    with torch.no_grad():
        own = F.normalize(student(lr), dim=1)
        target = F.normalize(pair(lr), dim=1)
    torch.testing.assert_close(total, (own - target).pow(2).sum(1).mean())
    assert abs(parts["fused"] - total.item()) < 1e-6


def test_with_a_partner_the_losses_see_the_pair_and_only_the_student_learns():
    torch.manual_seed(0)
    student = create_student("compact")
    partner = ColourPair(student.dim).requires_grad_(False)
    objective = Objective(student, build_losses({"l2": {"weight": 1.0}}), partner=partner)
    lr = torch.rand(4, 3, student.input_size, student.input_size) * 255
    target = torch.randn(4, student.dim)
    total, _ = objective(lr, target, torch.arange(4), None, 0.0)
    with torch.no_grad():
        pair = F.normalize(F.normalize(student(lr), dim=1) + F.normalize(partner(lr), dim=1))
    torch.testing.assert_close(total, (pair - F.normalize(target)).pow(2).sum(1).mean())
    total.backward()
    assert all(p.grad is None for p in partner.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
