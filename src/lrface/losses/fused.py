"""Distil a fused pair into one network: the target is the pair's embedding of the same LR face.

``lrface-lr-v2`` averages a student's and the teacher's unit embeddings of one small face; the
average beats both, at the cost of two ResNet-29 passes per face. Here a single student learns
to output that average for the very input it sees (issue 30, lever 4): the target comes from
the frozen pair run on the student's LR input, so it carries what the pair knows about that
degraded face, where the HR teacher target (``l2``) only says where the face should land.
Costs two no-grad forward passes of the pair per step (on CPU about two thirds of a step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss


def shipped_pair(name: str) -> nn.Module:
    """A shipped student fused with the teacher (``models.checkpoint.fuse_with_teacher``)."""
    from lrface.models.checkpoint import fuse_with_teacher, load_student_weights
    from lrface.models.students import create_student

    student = create_student("teacher-init")
    load_student_weights(student, "teacher-init", name)
    return fuse_with_teacher(student)


@register_loss("fused")
class FusedTargetLoss(TransferLoss):
    """Mean over the batch of ``||s/|s| - f/|f|||^2``, ``f`` the frozen pair's embedding of the
    student's own LR input (``lr_input``).

    source: the shipped student whose fusion with the teacher is the target (default
        ``lrface-lr-v2``); network: any frozen module instead (tests, other pairs).
    bf16: run the pair under bfloat16 autocast (the training's precision on this CPU).
    The pair is kept out of the module tree: never trained, moved, or checkpointed.
    """

    name = "fused"
    needs = ("lr_input",)

    def __init__(
        self,
        weight: float = 5.0,
        source: str = "lrface-lr-v2",
        network: nn.Module | None = None,
        bf16: bool = False,
    ):
        super().__init__(weight)
        network = shipped_pair(source) if network is None else network
        self._pair = (network.eval().requires_grad_(False),)
        self.bf16 = bf16

    @torch.no_grad()
    def target(self, lr_input: torch.Tensor) -> torch.Tensor:
        """The pair's unit embeddings of ``lr_input`` (moved to its device on first use)."""
        pair = self._pair[0]
        if next(pair.parameters()).device != lr_input.device:
            pair.to(lr_input.device)
        with torch.autocast(lr_input.device.type, torch.bfloat16, enabled=self.bf16):
            return F.normalize(pair(lr_input).float(), dim=1)

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        if outputs.lr_input is None:
            raise ValueError("FusedTargetLoss needs the student's LR input")
        student = F.normalize(outputs.student, dim=1)
        return (student - self.target(outputs.lr_input)).pow(2).sum(1).mean()
