"""ArcFace additive angular margin head, an identity loss on student embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss


@register_loss("arcface")
class ArcFaceLoss(TransferLoss):
    """ArcFace (Deng et al., CVPR 2019, arXiv 1801.07698): true-class logit ``s * cos(theta + m)``.

    Logits are ``s * cos(theta_j)`` between the normalized embedding and normalized class
    weights, with the true class's angle increased by ``m``. Where ``theta_y + m`` would exceed
    pi the margin no longer decreases the logit monotonically, so, as in the reference
    implementation, the logit becomes ``cos(theta_y) - m * sin(m)`` there; ``easy_margin``
    instead applies the margin only where ``cos(theta_y) > 0``.
    """

    name = "arcface"
    needs = ("labels",)

    def __init__(
        self,
        num_classes: int,
        dim: int = 128,
        weight: float = 1.0,
        s: float = 30.0,
        m: float = 0.5,
        easy_margin: bool = False,
    ):
        super().__init__(weight)
        self.s = s
        self.m = m
        self.easy_margin = easy_margin
        self.classes = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.classes)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Margin-adjusted, scaled logits ``N x num_classes``."""
        cos = F.normalize(embeddings, dim=1) @ F.normalize(self.classes, dim=1).T
        sin = (1.0 - cos.pow(2)).clamp_min(1e-12).sqrt()
        phi = cos * math.cos(self.m) - sin * math.sin(self.m)
        if self.easy_margin:
            phi = torch.where(cos > 0, phi, cos)
        else:
            threshold = math.cos(math.pi - self.m)
            phi = torch.where(cos > threshold, phi, cos - math.sin(math.pi - self.m) * self.m)
        target = F.one_hot(labels, cos.shape[1]).bool()
        return self.s * torch.where(target, phi, cos)

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        if outputs.labels is None:
            raise ValueError("ArcFaceLoss needs identity labels")
        return F.cross_entropy(self.logits(outputs.student, outputs.labels), outputs.labels)
