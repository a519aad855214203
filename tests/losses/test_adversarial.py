import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.gradcheck import GradcheckError

from lrface.losses.adversarial import (
    ADDA,
    DANNLoss,
    GradientReversal,
    dann_coefficient,
    grad_reverse,
)
from lrface.losses.base import TransferOutputs


def test_grl_is_identity_forward_and_reversed_scaled_backward():
    x = torch.randn(3, 4, requires_grad=True)
    y = grad_reverse(x, 0.7)
    torch.testing.assert_close(y, x)
    upstream = torch.randn(3, 4)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -0.7 * upstream)


def test_grl_gradcheck():
    x = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    # coeff -1 makes the reversal the identity, so analytic and numeric Jacobians must agree
    assert torch.autograd.gradcheck(lambda t: GradientReversal.apply(t, -1.0), (x,))
    assert torch.autograd.gradgradcheck(lambda t: GradientReversal.apply(t, -1.0), (x,))
    # any positive coeff must disagree with finite differences (the gradient is reversed)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda t: grad_reverse(t, 0.5), (x,))
    # composed with a smooth function: Jacobian = -coeff * the function's true Jacobian
    jac = torch.autograd.functional.jacobian(lambda t: grad_reverse(t, 0.5).sin(), x)
    expected = torch.autograd.functional.jacobian(torch.sin, x)
    torch.testing.assert_close(jac, -0.5 * expected)


def test_dann_coefficient_schedule():
    assert dann_coefficient(0.0) == 0.0
    assert math.isclose(dann_coefficient(0.5), math.tanh(2.5))  # 2/(1+e^-x) - 1 = tanh(x/2)
    assert math.isclose(dann_coefficient(1.0, gamma=4.0), 2 / (1 + math.exp(-4)) - 1)
    values = [dann_coefficient(p / 10) for p in range(11)]
    assert values == sorted(values) and values[-1] < 1.0


def test_dann_one_backward_trains_discriminator_normally_and_student_reversed():
    torch.manual_seed(0)
    loss_fn = DANNLoss(dim=6, hidden=8)
    reference = copy.deepcopy(loss_fn.discriminator)
    student = torch.randn(5, 6, requires_grad=True)
    teacher = torch.randn(4, 6, requires_grad=True)
    progress = 0.3
    loss = loss_fn(TransferOutputs(student=student, teacher=teacher, progress=progress))
    loss.backward()

    # the same objective without the GRL: discriminator on [teacher; student], labels 1 then 0
    plain_student = student.detach().clone().requires_grad_(True)
    logits = reference(torch.cat([teacher.detach(), plain_student]))
    labels = torch.tensor([1] * 4 + [0] * 5)
    plain = F.cross_entropy(logits, labels)
    plain.backward()

    torch.testing.assert_close(loss, plain)
    for ours, theirs in zip(
        loss_fn.discriminator.parameters(), reference.parameters(), strict=True
    ):
        torch.testing.assert_close(ours.grad, theirs.grad)
    coeff = dann_coefficient(progress)
    torch.testing.assert_close(student.grad, -coeff * plain_student.grad)
    assert teacher.grad is None


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_adda_discriminator_step_updates_only_the_discriminator():
    torch.manual_seed(1)
    adda = ADDA(dim=6, hidden=8, lr=1e-2)
    student_net = nn.Linear(3, 6)
    teacher = torch.randn(4, 6)
    student = student_net(torch.randn(4, 3))
    before_disc, before_student = params(adda.discriminator), params(student_net)

    logits = adda.discriminator(torch.cat([teacher, student.detach()]))
    labels = torch.tensor([1] * 4 + [0] * 4)
    expected_loss = F.cross_entropy(logits, labels).item()
    expected_acc = (logits.argmax(1) == labels).float().mean().item()

    metrics = adda.discriminator_step(student, teacher)
    assert math.isclose(metrics["loss"], expected_loss, rel_tol=1e-6)
    assert math.isclose(metrics["accuracy"], expected_acc)
    assert not same(params(adda.discriminator), before_disc)
    assert same(params(student_net), before_student)
    assert all(p.grad is None for p in student_net.parameters())


def test_adda_default_optimizer():
    adda = ADDA()
    group = adda.optimizer.param_groups[0]
    assert isinstance(adda.optimizer, torch.optim.Adam)
    assert (group["lr"], group["betas"]) == (1e-4, (0.5, 0.9))
    assert {id(p) for p in group["params"]} == {id(p) for p in adda.discriminator.parameters()}


def test_adda_generator_step_grads_student_through_updated_discriminator_only():
    torch.manual_seed(2)
    adda = ADDA(dim=6, hidden=8, lr=1e-2)
    student_net = nn.Linear(3, 6)
    student_opt = torch.optim.SGD(student_net.parameters(), lr=0.1)
    x, teacher = torch.randn(4, 3), torch.randn(4, 6)
    stale = copy.deepcopy(adda.discriminator)

    adda.discriminator_step(student_net(x), teacher)  # first the discriminator ...
    updated = copy.deepcopy(adda.discriminator)
    disc_params = params(adda.discriminator)
    disc_grads = [p.grad.clone() for p in adda.discriminator.parameters()]

    loss = adda.generator_loss(student_net(x))  # ... then the student, labels flipped to 1
    loss.backward()
    assert all(
        torch.equal(p.grad, g)
        for p, g in zip(adda.discriminator.parameters(), disc_grads, strict=True)
    )

    def student_grad(disc: nn.Module) -> torch.Tensor:
        probe = copy.deepcopy(student_net)
        probe.zero_grad()
        F.cross_entropy(disc(probe(x)), torch.ones(4, dtype=torch.long)).backward()
        return probe.weight.grad

    torch.testing.assert_close(student_net.weight.grad, student_grad(updated))
    assert not torch.allclose(student_net.weight.grad, student_grad(stale))

    student_opt.step()
    assert same(params(adda.discriminator), disc_params)


def test_adda_discriminator_learns_separable_domains():
    torch.manual_seed(3)
    adda = ADDA(dim=4, hidden=16, lr=1e-2)
    teacher, student = torch.randn(32, 4) + 2.0, torch.randn(32, 4) - 2.0
    for _ in range(10):
        metrics = adda.discriminator_step(student, teacher)
    assert metrics["accuracy"] == 1.0
    assert adda.generator_loss(student).item() > math.log(2)  # the student is caught
