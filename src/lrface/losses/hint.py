"""FitNets hints (Romero et al., ICLR 2015): regress the teacher's intermediate maps.

The embedding gives a student 128 numbers per training face; a stage map gives thousands, and
describes local parts of the face that recur across identities. On LFW's ~10k training faces
that extra signal is what a student trained from scratch lacks (it memorizes the embeddings
of its training people). For each chosen stage a 1x1 convolution (trained with the student,
not exported) maps the student's stage output to the teacher's channels; the loss is the mean
squared error against the teacher's map of the same (HR) face, pooled to the student's grid
and standardized per channel (``train.teacher_maps``), averaged over the stages. Its value is
the fraction of the teacher's map variance the student leaves unexplained (1 at a constant
prediction).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import register_loss

TEACHER_CHANNELS = (32, 64, 128, 256)


@register_loss("hint")
class HintLoss(TransferLoss):
    """Mean over ``stages`` of ``mse(regressor_s(student stage s), teacher map s)``.

    stages: stage indices, the same in student and teacher (0..3 for dlib's four widths).
    student_channels: the student's ``feature_channels`` (the engine passes them).
    teacher_channels: channels of the teacher's stages.
    """

    name = "hint"
    needs = ("student_features", "teacher_maps")

    def __init__(
        self,
        weight: float = 1.0,
        stages: Sequence[int] = (1, 2, 3),
        student_channels: Sequence[int] = TEACHER_CHANNELS,
        teacher_channels: Sequence[int] = TEACHER_CHANNELS,
    ):
        super().__init__(weight)
        if not stages:
            raise ValueError("hint needs at least one stage")
        if any(not 0 <= s < min(len(student_channels), len(teacher_channels)) for s in stages):
            raise ValueError(f"hint stages {list(stages)} outside the networks' stages")
        self.stages = tuple(int(s) for s in stages)
        self.regressors = nn.ModuleList(
            nn.Conv2d(student_channels[s], teacher_channels[s], 1) for s in self.stages
        )

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        total = outputs.student.new_zeros(())
        for stage, regressor in zip(self.stages, self.regressors, strict=True):
            target = outputs.teacher_maps[stage].detach()
            features = outputs.student_features[stage]
            if features.shape[-2:] != target.shape[-2:]:
                features = F.adaptive_avg_pool2d(features, target.shape[-2:])
            total = total + F.mse_loss(regressor(features), target)
        return total / len(self.stages)
