"""ArcFace additive angular margin head, an identity loss on student embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss


def angular_margin(
    cos: torch.Tensor, labels: torch.Tensor, m: float, easy_margin: bool = False
) -> torch.Tensor:
    """``cos`` (``N x C``) with each row's true class ``labels[i]`` moved to ``cos(theta + m)``.

    Where ``theta_y + m`` would exceed pi the margin no longer decreases the logit
    monotonically, so, as in ArcFace's reference implementation, the value becomes
    ``cos(theta_y) - m * sin(m)`` there; ``easy_margin`` instead applies the margin only where
    ``cos(theta_y) > 0``. ``m = 0`` returns ``cos`` unchanged.
    """
    if not m:
        return cos
    sin = (1.0 - cos.pow(2)).clamp_min(1e-12).sqrt()
    phi = cos * math.cos(m) - sin * math.sin(m)
    if easy_margin:
        phi = torch.where(cos > 0, phi, cos)
    else:
        phi = torch.where(cos > math.cos(math.pi - m), phi, cos - math.sin(math.pi - m) * m)
    target = F.one_hot(labels, cos.shape[1]).bool()
    return torch.where(target, phi, cos)


@register_loss("arcface")
class ArcFaceLoss(TransferLoss):
    """ArcFace (Deng et al., CVPR 2019, arXiv 1801.07698): true-class logit ``s * cos(theta + m)``.

    Logits are ``s * cos(theta_j)`` between the normalized embedding and normalized class
    weights, with the true class's angle increased by ``m`` (``angular_margin``).
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
        return self.s * angular_margin(cos, labels, self.m, self.easy_margin)

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        if outputs.labels is None:
            raise ValueError("ArcFaceLoss needs identity labels")
        return F.cross_entropy(self.logits(outputs.student, outputs.labels), outputs.labels)
