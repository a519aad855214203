"""What every transfer loss sees, and the interface it implements.

A training step produces one ``TransferOutputs``; each loss reads the fields it needs and
returns an unweighted scalar. The method config multiplies by each loss's weight and sums.
Embeddings here are raw (not yet normalized); a loss normalizes where its definition says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class TransferOutputs:
    """Everything a transfer loss may need from one batch.

    student: student embeddings of the LR faces, ``N x D``.
    teacher: teacher embeddings of the HR faces, ``N x D`` (row i pairs with student row i
        when the batch is paired; for unpaired adversarial losses the rows are unrelated).
    student_features / teacher_features: stage outputs ``N x C x H x W`` of the student and
        of the teacher run on the HR faces, stage by stage.
    teacher_maps: ``{stage: N x C x g x g}``, the teacher's cached, pooled, standardized maps
        of the HR faces (``train.teacher_maps``), for hint losses.
    labels: identity labels ``N`` (long), where the data has them.
    hr_student: embeddings of the HR faces by a trainable HR branch (guided CNN), ``N x D``.
    progress: training progress in [0, 1], for scheduled coefficients (gradient reversal).
    lr_input: the student's input batch ``N x 3 x S x S`` (0-255), for losses whose target is
        computed from the same LR face (``losses.fused``).
    """

    student: torch.Tensor
    teacher: torch.Tensor
    student_features: list[torch.Tensor] = field(default_factory=list)
    teacher_features: list[torch.Tensor] = field(default_factory=list)
    teacher_maps: dict[int, torch.Tensor] = field(default_factory=dict)
    labels: torch.Tensor | None = None
    hr_student: torch.Tensor | None = None
    progress: float = 0.0
    lr_input: torch.Tensor | None = None


class TransferLoss(nn.Module):
    """Base class: ``forward(outputs) -> scalar`` (unweighted); ``weight`` set by the config.

    ``needs`` lists the ``TransferOutputs`` fields beyond student/teacher that the loss reads,
    so the engine computes intermediate features or labels only when some loss needs them.
    """

    name: str = "loss"
    needs: tuple[str, ...] = ()
    stages: tuple[int, ...] = ()
    """For losses that need ``teacher_maps``: which stages' maps."""

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
