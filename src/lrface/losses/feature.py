"""Embedding regression onto the teacher: the plain feature-distillation baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss


@register_loss("l2")
class FeatureL2(TransferLoss):
    """Mean over the batch of ``||s/|s| - t/|t|||^2`` (student LR row i vs teacher HR row i).

    Comparing unit vectors matches how embeddings are used (cosine/Euclidean on the sphere);
    the teacher is a fixed target, so it is detached.
    """

    name = "l2"

    def __init__(self, weight: float = 5.0):
        super().__init__(weight)

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        student = F.normalize(outputs.student, dim=1)
        teacher = F.normalize(outputs.teacher.detach(), dim=1)
        return (student - teacher).pow(2).sum(1).mean()
