"""Cross-resolution InfoNCE: each LR embedding must pick its own HR teacher embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss


@register_loss("contrastive")
class InfoNCE(TransferLoss):
    """SimCLR-style InfoNCE (Chen et al., ICML 2020; van den Oord et al., arXiv 1807.03748).

    Logits are cosine similarities between student row i and every teacher row, divided by
    ``temperature``; row i's positive is teacher row i, the other teacher rows of the batch are
    negatives. Unlike FeatureL2 it also pushes the LR face away from other identities' HR
    embeddings. The teacher is detached.
    """

    name = "contrastive"

    def __init__(self, weight: float = 1.0, temperature: float = 0.1):
        super().__init__(weight)
        self.temperature = temperature

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        student = F.normalize(outputs.student, dim=1)
        teacher = F.normalize(outputs.teacher.detach(), dim=1)
        logits = student @ teacher.T / self.temperature
        targets = torch.arange(len(student), device=logits.device)
        return F.cross_entropy(logits, targets)
