"""Synthetic training data: smooth random faces and a fixed fake teacher (no LFW, no dlib)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrface.train.config import TrainConfig

TINY_STUDENT = {"widths": [8, 16, 16, 32], "depths": [1, 1, 1, 1]}


class FakeTeacher(nn.Module):
    """A fixed random projection of the 8x8-pooled chip: HR in, ``N x 128`` out."""

    def __init__(self, dim: int = 128, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", torch.randn(3 * 8 * 8, dim, generator=generator))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        pooled = F.adaptive_avg_pool2d(x / 255.0 - 0.5, 8)
        embedding = pooled.flatten(1) @ self.proj
        return (embedding, [pooled]) if return_features else embedding


def synthetic_chips(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random 150x150 chips (6x6 noise upsampled), so LR versions keep the content."""
    rng = np.random.default_rng(seed)
    small = torch.from_numpy(rng.uniform(0, 255, (n, 3, 6, 6)).astype(np.float32))
    big = F.interpolate(small, size=(150, 150), mode="bilinear", align_corners=False)
    return big.clamp(0, 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy()


def synthetic_data(n: int = 96, identities: int = 12):
    """``(hr_chips, teacher_emb, labels)``: targets flip-averaged and normalized, as
    ``lrface.train.lfw`` builds them."""
    chips = synthetic_chips(n)
    with torch.no_grad():
        x = torch.from_numpy(chips).permute(0, 3, 1, 2).float()
        teacher = FakeTeacher()
        emb = F.normalize(teacher(x) + teacher(x.flip(-1)), dim=1).numpy()
    return chips, emb, np.arange(n) % identities


def tiny_config(tmp_path, **changes) -> TrainConfig:
    """A config that trains a tiny compact student in well under a second per step."""
    base = dict(
        student="compact",
        student_kwargs=TINY_STUDENT,
        batch_size=16,
        steps=8,
        warmup_steps=2,
        lr=3e-3,
        num_workers=0,
        log_every=2,
        eval_every=0,
        checkpoint_every=4,
        tensorboard=False,
        out=str(tmp_path / "run"),
    )
    base.update(changes)
    return TrainConfig(**base)


def train_synthetic_member(config: TrainConfig, resume: bool, stop_after: int | None) -> None:
    """An ensemble member trained on ``synthetic_data`` (module level, so members can spawn it);
    a member whose seed is 13 fails, to test how a failed member is reported."""
    from lrface.train.engine import train

    if config.seed == 13:
        raise RuntimeError("member with seed 13 fails on purpose")
    train(config, *synthetic_data(), resume=resume, stop_after=stop_after, progress=False)
