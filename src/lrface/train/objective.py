"""What a training step minimizes: the configured losses on the student's outputs.

``Objective`` runs the student (and, when a loss needs them, the HR branch and the frozen
teacher's features) on a batch, lets ADDA discriminators take their own step on the detached
embeddings, and returns the weighted sum of the losses with each part for the logs.
``build_losses_for`` makes the losses of a config for a given student and training set.
With a ``partner`` (``TrainConfig.fuse_teacher``) the losses see the pair's embedding, the
unit mean of the student's and the frozen partner's unit embeddings of the same LR input.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrface.losses.base import TransferOutputs
from lrface.losses.methods import LossSet, build_losses, parse_method
from lrface.losses.prototype import teacher_prototypes
from lrface.models.students import resize_input
from lrface.train.config import TrainConfig


def build_losses_for(
    config: TrainConfig, student: nn.Module, teacher_emb: np.ndarray, labels: np.ndarray
) -> LossSet:
    """The losses of ``config.method`` (with ``method_kwargs``), sized for ``student`` and
    the training set (identity count, teacher prototypes); refuses feature losses that the
    student cannot serve."""
    spec = parse_method(config.method)
    for name, kwargs in config.method_kwargs.items():
        spec.setdefault(name, {}).update(kwargs)
    shared: dict = {"num_classes": int(np.max(labels)) + 1, "dim": student.dim}
    if getattr(student, "supports_features", False):
        shared["student_channels"] = student.feature_channels
    if "prototype" in spec:
        shared["prototypes"] = teacher_prototypes(
            torch.as_tensor(teacher_emb, dtype=torch.float32),
            torch.as_tensor(labels, dtype=torch.long),
        )
    losses = build_losses(spec, **shared)
    if "student_features" in losses.fields and not student.supports_features:
        raise ValueError(
            f"method {config.method!r} matches stage features, which student "
            f"{config.student!r} does not have"
        )
    return losses


def stage_maps(
    losses: LossSet,
    teacher_maps: Callable[[tuple[int, ...]], list[np.ndarray]] | None,
    rows: int,
    method: str,
) -> dict[int, np.ndarray]:
    """``{stage: M x 2 x C x g x g}`` teacher maps for the losses that read them, else ``{}``."""
    if "teacher_maps" not in losses.fields:
        return {}
    if teacher_maps is None:
        raise ValueError(f"method {method!r} needs the teacher's stage maps")
    stages = losses.stages
    maps = dict(zip(stages, teacher_maps(stages), strict=True))
    for stage, array in maps.items():
        if len(array) != rows or array.ndim != 5 or array.shape[1] != 2:
            raise ValueError(
                f"teacher maps of stage {stage}: expected {rows} x 2 x C x g x g, got {array.shape}"
            )
    return maps


class Objective(nn.Module):
    """Student, optional HR branch and the losses: ``forward(batch) -> (total, parts)``.

    One module so that a single DDP wrapper synchronizes every trainable parameter. The frozen
    teacher and ``partner`` are kept outside the module tree (no grads, not checkpointed, not
    broadcast). ``partner``: a frozen network fused with the student as the served pair fuses
    them (``models.checkpoint.fuse_with_teacher``), run on the same LR input without gradients.
    """

    def __init__(
        self,
        student: nn.Module,
        losses: LossSet,
        hr_branch: nn.Module | None = None,
        teacher: nn.Module | None = None,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
        precision: str = "fp32",
        partner: nn.Module | None = None,
    ):
        super().__init__()
        self.student = student
        self.precision = precision
        self.losses = losses
        self.hr_branch = hr_branch
        self.needs = losses.fields
        self._teacher = (teacher,)  # tuple: hidden from parameters() / state_dict()
        self._gather = gather
        self._partner = (partner,)

    def forward(
        self,
        lr: torch.Tensor,
        teacher_emb: torch.Tensor,
        labels: torch.Tensor,
        hr: torch.Tensor | None,
        progress: float,
        teacher_maps: dict[int, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        features = bool({"student_features", "teacher_features"} & self.needs)
        student_features: list[torch.Tensor] = []
        autocast = torch.autocast(lr.device.type, torch.bfloat16, enabled=self.precision == "bf16")
        with autocast:
            if features:
                embedding, student_features = self.student(lr, return_features=True)
            else:
                embedding = self.student(lr)
        embedding = embedding.float()
        if self._partner[0] is not None:
            with torch.no_grad(), autocast:
                partner = self._partner[0](lr)
            embedding = F.normalize(
                F.normalize(embedding, dim=1) + F.normalize(partner.float(), dim=1), dim=1
            )
        student_features = [f.float() for f in student_features]
        teacher_features: list[torch.Tensor] = []
        if "teacher_features" in self.needs:
            with torch.no_grad(), autocast:
                _, teacher_features = self._teacher[0](hr, return_features=True)
            teacher_features = [f.float() for f in teacher_features]
        hr_student = None
        if "hr_student" in self.needs:
            hr_student = self.hr_branch(resize_input(hr, self.hr_branch.input_size))
        outputs = TransferOutputs(
            student=embedding,
            teacher=teacher_emb,
            student_features=student_features,
            teacher_features=teacher_features,
            teacher_maps=teacher_maps or {},
            labels=labels,
            hr_student=hr_student,
            progress=progress,
            lr_input=lr if "lr_input" in self.needs else None,
        )
        disc: dict[str, float] = {}
        if self.losses.adda_modules:
            seen = outputs
            if self._gather is not None:
                seen = TransferOutputs(
                    self._gather(embedding.detach()), self._gather(teacher_emb.detach())
                )
            disc = self.losses.discriminator_steps(seen)
        total, parts = self.losses.total(outputs)
        return total, {**parts, **disc}
