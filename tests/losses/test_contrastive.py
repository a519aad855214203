import math

import torch

from lrface.losses.base import TransferOutputs
from lrface.losses.contrastive import InfoNCE


def test_uniform_similarities_give_log_batch():
    n = 6
    same = torch.ones(n, 3)  # every cosine similarity is 1
    loss = InfoNCE()(TransferOutputs(student=same, teacher=2 * same))
    assert math.isclose(loss.item(), math.log(n), rel_tol=1e-6)


def test_hand_computed_value():
    eye = torch.eye(2)
    # logits [[1, 0], [0, 1]] / T; each row: log(1 + exp(-1 / T))
    for temperature in (1.0, 0.5):
        loss = InfoNCE(temperature=temperature)(TransferOutputs(student=eye, teacher=3 * eye))
        expected = math.log1p(math.exp(-1 / temperature))
        assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_aligned_pairs_beat_swapped_pairs():
    torch.manual_seed(0)
    teacher = torch.randn(8, 16)
    loss_fn = InfoNCE()
    aligned = loss_fn(TransferOutputs(student=teacher, teacher=teacher))
    swapped = loss_fn(TransferOutputs(student=teacher.roll(1, 0), teacher=teacher))
    assert aligned < swapped


def test_gradcheck():
    torch.manual_seed(0)
    student = torch.randn(4, 5, dtype=torch.double, requires_grad=True)
    teacher = torch.randn(4, 5, dtype=torch.double)
    loss_fn = InfoNCE()
    assert torch.autograd.gradcheck(
        lambda s: loss_fn(TransferOutputs(student=s, teacher=teacher)), (student,)
    )
