"""Teacher-prototype identification loss: centres, hand-computed values, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from lrface.losses.base import TransferOutputs
from lrface.losses.prototype import PrototypeLoss, teacher_prototypes


def test_prototypes_are_unit_means_per_identity():
    emb = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 2])
    centres = teacher_prototypes(emb, labels)
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(centres, torch.tensor([[s, s], [0.0, 0.0], [0.0, -1.0]]))


def test_prototypes_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="N x D"):
        teacher_prototypes(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


def test_equidistant_centres_give_log_num_classes():
    centres = torch.eye(4)
    student = torch.ones(5, 4)  # the same cosine to every centre
    labels = torch.tensor([0, 1, 2, 3, 0])
    loss = PrototypeLoss(centres, scale=30.0)(TransferOutputs(student, student, labels=labels))
    torch.testing.assert_close(loss, torch.tensor(math.log(4)))


def test_value_matches_softmax_by_hand_and_prefers_the_right_centre():
    centres = torch.eye(3)
    student = torch.tensor([[3.0, 4.0, 0.0]])  # cosines 0.6, 0.8, 0
    loss_fn = PrototypeLoss(centres, scale=2.0)
    logits = torch.tensor([1.2, 1.6, 0.0])
    expected = torch.logsumexp(logits, 0) - logits[1]
    outputs = TransferOutputs(student, student, labels=torch.tensor([1]))
    torch.testing.assert_close(loss_fn(outputs), expected)
    wrong = TransferOutputs(student, student, labels=torch.tensor([2]))
    assert loss_fn(wrong) > loss_fn(outputs)


def test_gradient_and_no_stored_state():
    centres = torch.randn(6, 8, dtype=torch.float64)
    loss_fn = PrototypeLoss(centres).double()
    labels = torch.tensor([0, 3, 5])
    student = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(3, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda s: loss_fn(TransferOutputs(s, teacher, labels=labels)), (student,)
    )
    assert loss_fn.state_dict() == {}  # centres come from the data, not checkpoints


def test_needs_labels():
    loss_fn = PrototypeLoss(torch.eye(2))
    with pytest.raises(ValueError, match="labels"):
        loss_fn(TransferOutputs(torch.ones(1, 2), torch.ones(1, 2)))


def test_label_free_images_are_their_own_centres_beside_labelled_identities():
    """Mixed batch: two LFW-like identities (labels 0, 1) and two unlabelled images, which
    ``label_free_labels`` makes identities 2 and 3 with their own HR embeddings as centres."""
    from lrface.data.unlabelled import label_free_labels

    labelled = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    unlabelled = torch.tensor([[0.0, 0.0, 2.0], [0.0, 3.0, 4.0]])
    labels = torch.cat([torch.tensor([0, 0, 1]), torch.from_numpy(label_free_labels(2, first=2))])
    centres = teacher_prototypes(torch.cat([labelled, unlabelled]), labels)
    torch.testing.assert_close(centres[2:], torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.6, 0.8]]))
    # an LR face of the second unlabelled image, embedded exactly where the teacher put it
    student = torch.tensor([[0.0, 0.6, 0.8]])
    loss = PrototypeLoss(centres, scale=1.0)(
        TransferOutputs(student, student, labels=torch.tensor([3]))
    )
    logits = torch.tensor([0.0, 0.6, 0.8, 1.0])  # cosines to centres 0..3
    torch.testing.assert_close(loss, torch.logsumexp(logits, 0) - 1.0)


def test_margin_moves_only_the_own_centre_by_the_angle():
    centres = torch.eye(3)
    student = torch.tensor([[3.0, 4.0, 0.0]])  # cosines 0.6, 0.8, 0
    labels = torch.tensor([1])
    outputs = TransferOutputs(student, student, labels=labels)
    m = 0.2
    loss = PrototypeLoss(centres, scale=2.0, margin=m)(outputs)
    own = math.cos(math.acos(0.8) + m)
    logits = torch.tensor([1.2, 2.0 * own, 0.0])
    torch.testing.assert_close(loss, torch.logsumexp(logits, 0) - logits[1])
    assert loss > PrototypeLoss(centres, scale=2.0)(outputs)  # the margin asks for more
    no_margin = PrototypeLoss(centres, scale=2.0, margin=0.0)(outputs)
    torch.testing.assert_close(no_margin, PrototypeLoss(centres, scale=2.0)(outputs))


def test_hard_negatives_keep_the_highest_wrong_centres_only():
    centres = torch.eye(4)
    student = torch.tensor([[0.1, 0.5, 0.3, 0.7]])  # own centre 0, hardest wrong: 3 then 1
    outputs = TransferOutputs(student, student, labels=torch.tensor([0]))
    cos = torch.nn.functional.normalize(student, dim=1)[0]
    hard = PrototypeLoss(centres, scale=3.0, hard_negatives=2)(outputs)
    kept = 3.0 * cos[[0, 3, 1]]
    torch.testing.assert_close(hard, torch.logsumexp(kept, 0) - kept[0])
    every = PrototypeLoss(centres, scale=3.0)(outputs)
    assert hard < every  # the easy impostor (centre 2) is out of the softmax
    all_wrong = PrototypeLoss(centres, scale=3.0, hard_negatives=3)(outputs)
    torch.testing.assert_close(all_wrong, every)


def test_margin_and_hard_negatives_are_differentiable_and_validated():
    centres = torch.randn(6, 8, dtype=torch.float64)
    loss_fn = PrototypeLoss(centres, margin=0.1, hard_negatives=2).double()
    labels = torch.tensor([0, 3, 5])
    student = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda s: loss_fn(TransferOutputs(s, s.detach(), labels=labels)), (student,)
    )
    with pytest.raises(ValueError, match="margin"):
        PrototypeLoss(centres, margin=-0.1)
