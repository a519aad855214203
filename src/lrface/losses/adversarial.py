"""Adversarial domain alignment: gradient reversal (DANN) and the two-optimizer ADDA.

DANN (Ganin & Lempitsky, ICML 2015, arXiv 1409.7495): a discriminator learns to tell HR
teacher embeddings (domain 1) from LR student embeddings (domain 0); the student's embeddings
reach it through a gradient-reversal layer, so one backward pass trains the discriminator to
separate the domains and the student to confuse it.

ADDA (Tzeng et al., CVPR 2017, arXiv 1702.05464): the discriminator and the student take
alternating steps with their own optimizers; the student's objective uses inverted labels
(its embeddings labelled "teacher") rather than a reversed gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss
from lrface.models.discriminator import DomainDiscriminator

TEACHER_DOMAIN = 1
STUDENT_DOMAIN = 0


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-coeff``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output * -ctx.coeff, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """``x`` unchanged, with its gradient reversed and scaled by ``coeff`` on the way back."""
    return GradientReversal.apply(x, coeff)


def dann_coefficient(progress: float, gamma: float = 10.0) -> float:
    """DANN's schedule ``2 / (1 + exp(-gamma * p)) - 1``: 0 at the start, towards 1 at the end.

    Suppresses the noisy adversarial signal while the discriminator is still untrained.
    """
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def _domain_labels(n_teacher: int, n_student: int, device: torch.device) -> torch.Tensor:
    return torch.cat(
        [
            torch.full((n_teacher,), TEACHER_DOMAIN, dtype=torch.long, device=device),
            torch.full((n_student,), STUDENT_DOMAIN, dtype=torch.long, device=device),
        ]
    )


@register_loss("dann")
class DANNLoss(TransferLoss):
    """Domain-adversarial loss with a gradient-reversal layer; owns its discriminator.

    Returns the discriminator's cross-entropy on ``[teacher; student]``. Teacher embeddings are
    detached; student embeddings pass through ``grad_reverse`` with coefficient
    ``dann_coefficient(outputs.progress, gamma)``. The discriminator's parameters belong to
    this module, so the engine's optimizer must include them
    (``methods.LossSet.trainable_parameters`` does).
    """

    name = "dann"

    def __init__(
        self,
        weight: float = 1.0,
        dim: int = 128,
        hidden: int = 512,
        gamma: float = 10.0,
        normalize: bool = False,
    ):
        super().__init__(weight)
        self.gamma = gamma
        self.discriminator = DomainDiscriminator(dim, hidden, normalize)

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        coeff = dann_coefficient(outputs.progress, self.gamma)
        teacher = outputs.teacher.detach()
        student = grad_reverse(outputs.student, coeff)
        logits = self.discriminator(torch.cat([teacher, student]))
        labels = _domain_labels(len(teacher), len(student), logits.device)
        return F.cross_entropy(logits, labels)


class ADDA(nn.Module):
    """ADDA's discriminator with its own Adam; not a TransferLoss (it needs two optimizers).

    Each training step: ``discriminator_step`` first (updates the discriminator only, on
    detached embeddings), then the student's optimizer steps on ``generator_loss`` (inverted
    labels). The discriminator's parameters enter the generator graph as detached constants
    (``torch.func.functional_call``), so the student's backward never writes their ``.grad``
    and the gradient reaches the student only through the discriminator's input. Keep them out
    of the student's optimizer as well (``methods.LossSet.trainable_parameters`` does).
    """

    def __init__(
        self,
        dim: int = 128,
        hidden: int = 512,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        normalize: bool = False,
    ):
        super().__init__()
        self.discriminator = DomainDiscriminator(dim, hidden, normalize)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)

    def discriminator_step(
        self, student_emb: torch.Tensor, teacher_emb: torch.Tensor
    ) -> dict[str, float]:
        """One Adam step on the discriminator (teacher 1, student 0); returns loss and accuracy."""
        teacher, student = teacher_emb.detach(), student_emb.detach()
        logits = self.discriminator(torch.cat([teacher, student]))
        labels = _domain_labels(len(teacher), len(student), logits.device)
        loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        accuracy = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss.item(), "accuracy": accuracy.item()}

    def generator_loss(self, student_emb: torch.Tensor) -> torch.Tensor:
        """Student's loss: cross-entropy of its embeddings against the teacher label (1)."""
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        logits = functional_call(self.discriminator, frozen, (student_emb,))
        labels = torch.full(
            (len(student_emb),), TEACHER_DOMAIN, dtype=torch.long, device=logits.device
        )
        return F.cross_entropy(logits, labels)


@register_loss("adda")
class ADDALoss(TransferLoss):
    """ADDA's generator loss as a TransferLoss, so it composes by weight with other losses.

    The engine must call ``self.adda.discriminator_step(student, teacher)`` before computing
    the losses each step (``methods.LossSet.discriminator_steps`` does it for every ADDA loss).
    """

    name = "adda"

    def __init__(
        self,
        weight: float = 1.0,
        dim: int = 128,
        hidden: int = 512,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        normalize: bool = False,
    ):
        super().__init__(weight)
        self.adda = ADDA(dim, hidden, lr, betas, normalize)

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        return self.adda.generator_loss(outputs.student)
