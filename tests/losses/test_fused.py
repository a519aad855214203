"""Fused-pair target: the frozen pair's embedding of the student's own LR input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrface.losses.base import TransferOutputs
from lrface.losses.fused import FusedTargetLoss
from lrface.losses.methods import build_losses, parse_method


class MeanColour(nn.Module):
    """A transparent frozen 'pair': the mean colour of the input as a 3-d embedding."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) * self.scale


def test_value_by_hand_and_the_pair_stays_frozen_and_hidden():
    lr = torch.zeros(2, 3, 4, 4)
    lr[0, 0], lr[1, 2] = 10.0, 5.0  # pair embeddings: (1, 0, 0) and (0, 0, 1) after norm
    student = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    pair = MeanColour()
    loss_fn = FusedTargetLoss(network=pair)
    loss = loss_fn(TransferOutputs(student, student.detach(), lr_input=lr))
    # row 0 on target (0); row 1: |(0,1,0) - (0,0,1)|^2 = 2 -> mean 1
    torch.testing.assert_close(loss, torch.tensor(1.0))
    loss.backward()
    assert student.grad is not None and pair.scale.grad is None
    assert list(loss_fn.parameters()) == [] and loss_fn.state_dict() == {}


def test_target_is_the_unit_pair_embedding_and_needs_the_input():
    loss_fn = FusedTargetLoss(network=MeanColour())
    lr = torch.rand(3, 3, 4, 4) * 255
    torch.testing.assert_close(loss_fn.target(lr), F.normalize(lr.mean((2, 3)), dim=1))
    with pytest.raises(ValueError, match="LR input"):
        loss_fn(TransferOutputs(torch.ones(1, 3), torch.ones(1, 3)))


def test_registered_and_asks_for_the_input():
    losses = build_losses(parse_method("fused=2,l2=5"), network=MeanColour())
    assert losses["fused"].weight == 2.0
    assert "lr_input" in losses.fields
