"""A-SKD attention-similarity loss: maps, scale invariance, hand values, gradients, registry."""

from __future__ import annotations

import math

import pytest
import torch

from lrface.losses.attention import (
    AttentionSimilarityLoss,
    channel_attention,
    spatial_attention,
)
from lrface.losses.methods import build_losses, parse_method
from tests.losses.test_mmd import nst_outputs as outputs


def test_maps_by_hand():
    features = torch.tensor([[[[1.0, -2.0]], [[3.0, 0.0]]]])  # N=1, C=2, H=1, W=2
    torch.testing.assert_close(spatial_attention(features), torch.tensor([[5.0, 2.0]]))
    torch.testing.assert_close(channel_attention(features), torch.tensor([[1.5, 1.5]]))


def test_same_attention_at_any_scale_gives_zero_and_moved_attention_costs():
    torch.manual_seed(0)
    teacher = [torch.rand(3, 4, 6, 6), torch.rand(3, 8, 3, 3)]
    weaker = [0.2 * t for t in teacher]  # an LR face: weaker features, same regions
    loss_fn = AttentionSimilarityLoss()
    assert loss_fn(outputs(weaker, teacher)).item() < 1e-6
    moved = [t.clone() for t in teacher]
    moved[0][:, :, :3] = 0  # the student ignores the top half of the face
    assert loss_fn(outputs(moved, teacher)).item() > 1e-3


def test_value_by_hand_spatial_only_with_pooling():
    # student 2x2 map pooled to the teacher's 1x2: columns average
    student = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # spatial attention after pooling: (1, 0)
    teacher = torch.tensor([[[[1.0, 1.0]]]])  # (1, 1): cosine 1/sqrt(2)
    loss = AttentionSimilarityLoss(channel=False)(outputs([student], [teacher]))
    assert math.isclose(loss.item(), 1 - 1 / math.sqrt(2), rel_tol=1e-6)


def test_layers_choose_stages_and_channel_counts_must_match():
    a, b = torch.rand(2, 4, 3, 3), torch.rand(2, 4, 3, 3)
    only_first = AttentionSimilarityLoss(layers=[0])
    assert only_first(outputs([a, torch.rand(2, 4, 3, 3)], [a, b])).item() < 1e-6
    with pytest.raises(ValueError, match="channel counts"):
        AttentionSimilarityLoss()(outputs([torch.rand(2, 3, 3, 3)], [a]))
    assert AttentionSimilarityLoss(channel=False)(outputs([torch.rand(2, 3, 3, 3)], [a])) >= 0
    with pytest.raises(ValueError, match="one student map per teacher map"):
        AttentionSimilarityLoss()(outputs([a], [a, b]))


def test_gradient_flows_to_the_student_only():
    torch.manual_seed(1)
    student = torch.rand(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    teacher = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    loss_fn = AttentionSimilarityLoss()
    assert torch.autograd.gradcheck(lambda s: loss_fn(outputs([s], [teacher])), (student,))


def test_registered_and_composable():
    spec = parse_method("askd+prototype+l2")
    assert spec == {
        "askd": {"weight": 1.0},
        "prototype": {"weight": 1.0},
        "l2": {"weight": 5.0},
    }
    losses = build_losses(parse_method("askd=2,l2=5"))
    assert losses["askd"].weight == 2.0
    assert {"student_features", "teacher_features"} <= losses.fields
