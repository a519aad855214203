"""Guided CNN: a trainable HR branch guides the LR branch under joint identity supervision."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss


@register_loss("guided")
class GuidedLoss(TransferLoss):
    """Guided-CNN objective (Fu, Chiu & Wang, "Learning Guided Convolutional Neural Networks
    for Cross-Resolution Face Recognition", MLSP 2017).

    The paper trains two parallel sub-CNNs, a guide on HR faces and a learner on LR faces, with
    identity supervision within each resolution plus a cross-resolution term tying the
    learner to the guide. Here the engine supplies both branches' embeddings
    (``hr_student``: HR branch, ``student``: LR branch) and this loss returns

    ``CE(hr) + CE(lr) + guide_weight * mean ||lr/|lr| - sg(hr/|hr|)||^2``

    where both cross-entropies use one shared cosine classifier (``scale * cos``), so the
    branches are supervised in the same identity space, and ``sg`` (detach) makes the guidance
    move only the LR branch: the HR branch is shaped by its own classification loss alone.
    The guidance term is the squared distance of unit embeddings (this project's FeatureL2
    convention); the classifier's parameters belong to this module and must be optimized.
    """

    name = "guided"
    needs = ("labels", "hr_student")

    def __init__(
        self,
        num_classes: int,
        dim: int = 128,
        weight: float = 1.0,
        guide_weight: float = 1.0,
        scale: float = 16.0,
    ):
        super().__init__(weight)
        self.guide_weight = guide_weight
        self.scale = scale
        self.classes = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.classes)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scaled cosine logits ``N x num_classes`` of the shared classifier."""
        return self.scale * F.normalize(embeddings, dim=1) @ F.normalize(self.classes, dim=1).T

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        if outputs.labels is None or outputs.hr_student is None:
            raise ValueError("GuidedLoss needs labels and hr_student (the HR branch)")
        hr, lr, labels = outputs.hr_student, outputs.student, outputs.labels
        classification = F.cross_entropy(self.logits(hr), labels) + F.cross_entropy(
            self.logits(lr), labels
        )
        guide = F.normalize(hr.detach(), dim=1)
        guidance = (F.normalize(lr, dim=1) - guide).pow(2).sum(1).mean()
        return classification + self.guide_weight * guidance
