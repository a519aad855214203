"""Teacher-prototype identification: each LR face must pick its identity's HR centre.

Why: L2 and batch InfoNCE pull an LR embedding towards its own HR embedding but see few
other identities per step, so an LR probe can land nearer to another person's HR photo
(what hurts 1:N search). Here every step scores the LR embedding against the frozen centre of
every training identity in the teacher's space, which is the gallery search the student
will face, without moving the teacher's space (the centres are fixed, unlike an ArcFace head).

For the tail (TAR at FAR 1e-3, open-set FNIR at FPIR 1%) the mean is not enough: an LR probe
must clear its nearest wrong centre by a gap, not just beat it on average. Two options do
that: an ArcFace-style additive angular ``margin`` on the own-centre cosine (label-free data
works too, each unlabelled image being its own centre), and ``hard_negatives`` (softmax over
the own centre and only the ``k`` wrong centres that score highest for this probe, so the
gradient goes to the impostors that would trigger a false alarm, not to thousands of easy ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.margin import angular_margin
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
    margin: additive angular margin (radians) on the own centre; hard_negatives: ``k`` > 0
    keeps only the ``k`` highest-scoring wrong centres per row in the softmax (0: all).
    """

    name = "prototype"
    needs = ("labels",)

    def __init__(
        self,
        prototypes: torch.Tensor,
        weight: float = 1.0,
        scale: float = 64.0,
        margin: float = 0.0,
        hard_negatives: int = 0,
    ):
        super().__init__(weight)
        if margin < 0 or hard_negatives < 0:
            raise ValueError(
                f"margin and hard_negatives must be >= 0, got {margin} and {hard_negatives}"
            )
        self.scale = scale
        self.margin = margin
        self.hard_negatives = hard_negatives
        self.register_buffer("prototypes", F.normalize(prototypes.float(), dim=1), persistent=False)

    def logits(self, student: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scaled cosines to every centre (own centre with the margin); with
        ``hard_negatives`` the wrong centres outside each row's ``k`` highest are ``-inf``."""
        cos = F.normalize(student, dim=1) @ self.prototypes.T
        logits = self.scale * angular_margin(cos, labels, self.margin)
        if self.hard_negatives and self.hard_negatives < cos.shape[1] - 1:
            wrong = cos.detach().scatter(1, labels[:, None], float("-inf"))
            hardest = wrong.topk(self.hard_negatives, dim=1).indices
            keep = torch.zeros_like(cos, dtype=torch.bool).scatter_(1, hardest, True)
            keep.scatter_(1, labels[:, None], True)
            logits = logits.masked_fill(~keep, float("-inf"))
        return logits

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        if outputs.labels is None:
            raise ValueError("PrototypeLoss needs identity labels")
        return F.cross_entropy(self.logits(outputs.student, outputs.labels), outputs.labels)
