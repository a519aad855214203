import math

import pytest
import torch
import torch.nn.functional as F

from lrface.losses.base import TransferOutputs
from lrface.losses.mmd import DomainMMD, NSTLoss


def nst_outputs(student_maps, teacher_maps) -> TransferOutputs:
    n = len(student_maps[0])
    return TransferOutputs(
        student=torch.zeros(n, 2),
        teacher=torch.zeros(n, 2),
        student_features=student_maps,
        teacher_features=teacher_maps,
    )


@pytest.mark.parametrize("kernel", ["poly", "linear", "gaussian"])
def test_nst_identical_maps_give_zero_shifted_maps_positive(kernel):
    torch.manual_seed(0)
    maps = torch.rand(3, 4, 5, 5)
    loss_fn = NSTLoss(kernel=kernel)
    same = loss_fn(nst_outputs([maps], [maps.clone()]))
    assert abs(same.item()) < 1e-6
    shifted = maps.clone()
    shifted[:, :, :2] += 1.0  # more mass in the top rows of every channel
    assert loss_fn(nst_outputs([maps], [shifted])).item() > 1e-3


def test_nst_single_channel_hand_values():
    # one sample, one channel each: student map (1, 0), teacher map (0, 1); x.y = 0, |x-y|^2 = 2
    student = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    teacher = torch.tensor([0.0, 3.0]).view(1, 1, 1, 2)
    outputs = nst_outputs([student], [teacher])
    assert math.isclose(NSTLoss(kernel="poly")(outputs).item(), 2.0, rel_tol=1e-6)
    assert math.isclose(NSTLoss(kernel="linear")(outputs).item(), 2.0, rel_tol=1e-6)
    gaussian = NSTLoss(kernel="gaussian", sigma2=1.0)(outputs).item()
    assert math.isclose(gaussian, 2 - 2 * math.exp(-1), rel_tol=1e-6)


def test_nst_poly_kernel_matches_spatial_gram_difference():
    # d=2, c=0: MMD^2 = |X^T X - Y^T Y|_F^2 / C^2 with X, Y the C x HW normalized channel maps
    torch.manual_seed(1)
    student, teacher = torch.randn(2, 6, 3, 3), torch.randn(2, 6, 3, 3)
    x = F.normalize(student.flatten(2), dim=2)
    y = F.normalize(teacher.flatten(2), dim=2)
    gram_diff = x.transpose(1, 2) @ x - y.transpose(1, 2) @ y
    expected = (gram_diff.pow(2).sum((1, 2)) / 36).mean()
    torch.testing.assert_close(NSTLoss()(nst_outputs([student], [teacher])), expected)


def test_nst_pools_larger_map_sums_layers_and_allows_channel_mismatch():
    torch.manual_seed(2)
    student_a, teacher_a = torch.rand(2, 3, 2, 2), torch.rand(2, 5, 4, 4)
    student_b, teacher_b = torch.rand(2, 4, 6, 6), torch.rand(2, 4, 3, 3)
    loss_fn = NSTLoss()
    pooled_a = loss_fn(nst_outputs([student_a], [F.avg_pool2d(teacher_a, 2)]))
    pooled_b = loss_fn(nst_outputs([F.avg_pool2d(student_b, 2)], [teacher_b]))
    both = loss_fn(nst_outputs([student_a, student_b], [teacher_a, teacher_b]))
    torch.testing.assert_close(both, pooled_a + pooled_b)
    with pytest.raises(ValueError):
        loss_fn(nst_outputs([student_a], [teacher_a, teacher_b]))


@pytest.mark.parametrize("kernel", ["poly", "linear", "gaussian"])
def test_nst_gradcheck(kernel):
    torch.manual_seed(3)
    student = torch.rand(2, 3, 2, 3, dtype=torch.double, requires_grad=True)
    teacher = torch.rand(2, 4, 2, 3, dtype=torch.double)
    loss_fn = NSTLoss(kernel=kernel, sigma2=0.5)
    assert torch.autograd.gradcheck(lambda s: loss_fn(nst_outputs([s], [teacher])), (student,))


def test_domain_mmd_hand_values():
    student, teacher = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    outputs = TransferOutputs(student=student, teacher=teacher)
    # unit vectors at squared distance 2
    one = DomainMMD(num_kernels=1, bandwidth=1.0)(outputs).item()
    assert math.isclose(one, 2 - 2 * math.exp(-2), rel_tol=1e-6)
    # bandwidths 0.5, 1, 2: k(x, x) = 3, k(x, y) = e^-4 + e^-2 + e^-1
    three = DomainMMD(num_kernels=3, bandwidth=1.0)(outputs).item()
    expected = 6 - 2 * (math.exp(-4) + math.exp(-2) + math.exp(-1))
    assert math.isclose(three, expected, rel_tol=1e-6)
    # automatic bandwidth: mean squared distance over the 2 distinct pairs = 2
    auto = DomainMMD(num_kernels=1)(outputs).item()
    assert math.isclose(auto, 2 - 2 * math.exp(-1), rel_tol=1e-6)


def test_domain_mmd_identical_zero_shifted_positive_unequal_sizes():
    torch.manual_seed(4)
    teacher = torch.randn(16, 8)
    loss_fn = DomainMMD()
    same = loss_fn(TransferOutputs(student=teacher[torch.randperm(16)], teacher=teacher))
    assert abs(same.item()) < 1e-6
    shifted = loss_fn(TransferOutputs(student=torch.randn(10, 8) + 2.0, teacher=teacher))
    assert shifted.item() > 0.05


def test_domain_mmd_gradcheck():
    torch.manual_seed(5)
    student = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    teacher = torch.randn(5, 3, dtype=torch.double)
    loss_fn = DomainMMD(bandwidth=1.0)
    assert torch.autograd.gradcheck(
        lambda s: loss_fn(TransferOutputs(student=s, teacher=teacher)), (student,)
    )
