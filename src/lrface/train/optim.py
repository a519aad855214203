"""The student's optimizer and learning-rate schedule, from the run's config."""

from __future__ import annotations

import math

import torch
from torch import nn

from lrface.train.config import TrainConfig


def lr_factor(config: TrainConfig, step: int) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then the schedule."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "cosine":
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine
    if config.schedule == "step":
        return config.gamma ** sum(step >= m for m in config.milestones)
    return 1.0


def param_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices/kernels only (not on norms, biases, PReLU slopes)."""
    decay = [p for p in params if p.ndim > 1]
    plain = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def make_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW (with the config's betas) or Nesterov SGD over ``params``."""
    groups = param_groups(params, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.adam_betas))


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of ``lr_factor``, advanced once per step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step))
