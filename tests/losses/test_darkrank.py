import math

import pytest
import torch

from lrface.losses.base import TransferOutputs
from lrface.losses.darkrank import DarkRank, plackett_luce_log_prob


def unit(degrees: list[float]) -> torch.Tensor:
    rad = torch.tensor(degrees, dtype=torch.double) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)


# Teacher at 0, 60 and 180 degrees: squared distances 1 (0-60), 3 (60-180), 4 (0-180).
# With scale 1, power 1 a candidate's score is -d^2, and each query's two candidates in
# teacher order (near, far) have score gap far - near: 3 (query 0), 2 (query 60), 1 (query 180).
GAPS = (3.0, 2.0, 1.0)


def outputs(student: torch.Tensor, teacher: torch.Tensor) -> TransferOutputs:
    return TransferOutputs(student=student, teacher=teacher)


def test_listmle_hand_value():
    teacher = unit([0, 60, 180])
    loss = DarkRank(variant="listmle", scale=1.0, power=1.0, list_length=2)
    # -log P(near, far) = log(1 + exp(-(gap)))
    expected = sum(math.log1p(math.exp(-g)) for g in GAPS) / 3
    assert math.isclose(loss(outputs(teacher, teacher)).item(), expected, rel_tol=1e-9)


def test_listnet_hand_value_is_teacher_entropy_at_student_equals_teacher():
    teacher = unit([0, 60, 180])
    loss = DarkRank(variant="listnet", scale=1.0, power=1.0, list_length=2)

    def entropy(gap: float) -> float:
        p = 1 / (1 + math.exp(-gap))
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))

    expected = sum(entropy(g) for g in GAPS) / 3
    assert math.isclose(loss(outputs(teacher, teacher)).item(), expected, rel_tol=1e-9)


def test_reference_defaults():
    loss = DarkRank()
    assert (loss.weight, loss.variant, loss.scale, loss.power, loss.list_length) == (
        16.0,
        "listnet",
        3.5,
        2.0,
        4,
    )


def test_score_convention_scales_squared_distance_then_powers():
    embeddings = unit([0, 60])
    candidates = torch.tensor([[1], [0]])
    scores = DarkRank(scale=3.5, power=2.0).scores(5 * embeddings, candidates)
    torch.testing.assert_close(scores, torch.full((2, 1), -(3.5**2), dtype=torch.double))


def test_plackett_luce_probabilities_sum_to_one():
    from itertools import permutations

    scores = torch.tensor([0.3, -1.2, 2.0, 0.5], dtype=torch.double)
    orders = torch.tensor(list(permutations(range(4))))
    total = plackett_luce_log_prob(scores[orders]).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.double))


@pytest.mark.parametrize("variant", ["listnet", "listmle"])
def test_matching_ranking_is_minimal_and_shuffled_student_is_worse(variant):
    torch.manual_seed(0)
    teacher = torch.randn(10, 16, dtype=torch.double)
    loss_fn = DarkRank(variant=variant, scale=1.0, power=1.0)
    matched = loss_fn(outputs(teacher, teacher))
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        shuffled = teacher[torch.randperm(10, generator=generator)]
        assert loss_fn(outputs(shuffled, teacher)) > matched
    if variant == "listnet":  # at its minimum: the gradient vanishes
        student = teacher.clone().requires_grad_(True)
        loss_fn(outputs(student, teacher)).backward()
        assert student.grad.abs().max() < 1e-10


def test_listmle_over_whole_list_and_short_batch():
    torch.manual_seed(1)
    teacher = torch.randn(4, 8)
    whole = DarkRank(variant="listmle", list_length=None)
    assert whole.candidates(teacher).shape == (4, 3)
    short = DarkRank(variant="listnet", list_length=6)  # clipped to the 3 other samples
    assert short.candidates(teacher).shape == (4, 3)
    assert torch.isfinite(short(outputs(torch.randn(4, 8), teacher)))
    with pytest.raises(ValueError):
        DarkRank(variant="listnet", list_length=None)


@pytest.mark.parametrize("variant", ["listnet", "listmle"])
def test_gradcheck(variant):
    torch.manual_seed(2)
    teacher = torch.randn(5, 4, dtype=torch.double)
    student = torch.randn(5, 4, dtype=torch.double, requires_grad=True)
    loss_fn = DarkRank(variant=variant, list_length=3)
    assert torch.autograd.gradcheck(lambda s: loss_fn(outputs(s, teacher)), (student,))
