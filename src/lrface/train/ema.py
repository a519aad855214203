"""Exponential moving average of the student's weights (and BN statistics).

With ``ema_decay`` > 0 the average is the deployed student: evaluation, ``best/`` and the
exported ``student.safetensors`` use it, while the raw weights keep training. A checkpoint
therefore also holds the raw weights and the average's step count, so a resume continues both.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(student: nn.Module, decay: float) -> AveragedModel | None:
    """An average of ``student`` with ``decay`` per step; ``None`` when ``decay`` is 0."""
    if not decay:
        return None
    return AveragedModel(student, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def ema_tensors(ema: AveragedModel, student: nn.Module) -> dict[str, torch.Tensor]:
    """The training state beside the exported average: raw weights and the step count."""
    tensors = {f"student_raw.{k}": v for k, v in student.state_dict().items()}
    tensors["ema.n_averaged"] = ema.n_averaged
    return tensors


def load_ema(
    ema: AveragedModel,
    student: nn.Module,
    exported: dict[str, torch.Tensor],
    tensors: dict[str, torch.Tensor],
) -> None:
    """Inverse of ``ema_tensors``: ``exported`` (the checkpoint's student) is the average."""
    ema.module.load_state_dict(exported)
    ema.n_averaged.copy_(tensors["ema.n_averaged"])
    raw = "student_raw."
    student.load_state_dict({k[len(raw) :]: v for k, v in tensors.items() if k.startswith(raw)})
