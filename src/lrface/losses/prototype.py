"""Teacher-prototype identification: each LR face must pick its identity's HR centre.

Why: L2 and batch InfoNCE pull an LR embedding towards its own HR embedding but see few
other identities per step, so an LR probe can land nearer to another person's HR photo
(what hurts 1:N search). Here every step scores the LR embedding against the frozen centre of
every training identity in the teacher's space, which is the gallery search the student
will face, without moving the teacher's space (the centres are fixed, unlike an ArcFace head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss


def teacher_prototypes(teacher_emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-identity centres ``C x D``: mean of the unit teacher embeddings, re-normalized.

    Row ``c`` is identity ``c`` (``C = labels.max() + 1``); an identity without images has a
    zero row, which scores cosine 0 against everything.
    """
    if teacher_emb.ndim != 2 or labels.shape != (len(teacher_emb),):
        raise ValueError("teacher_emb must be N x D and labels N")
    unit = F.normalize(teacher_emb.float(), dim=1)
    sums = torch.zeros(int(labels.max()) + 1, unit.shape[1]).index_add_(0, labels, unit)
    return F.normalize(sums, dim=1)


@register_loss("prototype")
class PrototypeLoss(TransferLoss):
    """Cross-entropy over ``scale * cos(student, centre_c)`` for every identity ``c``.

    ``prototypes`` (``C x D``, from ``teacher_prototypes`` of the training set) are a
    non-persistent buffer: recomputed from the data, never stored in checkpoints. ``scale``
    is large because the dlib teacher's cosines are compressed (same person ~0.93, different
    people ~0.8), so a small scale would leave every identity almost equally likely.
    """

    name = "prototype"
    needs = ("labels",)

    def __init__(self, prototypes: torch.Tensor, weight: float = 1.0, scale: float = 64.0):
        super().__init__(weight)
        self.scale = scale
        self.register_buffer("prototypes", F.normalize(prototypes.float(), dim=1), persistent=False)

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        if outputs.labels is None:
            raise ValueError("PrototypeLoss needs identity labels")
        cos = F.normalize(outputs.student, dim=1) @ self.prototypes.T
        return F.cross_entropy(self.scale * cos, outputs.labels)
