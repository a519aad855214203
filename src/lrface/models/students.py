"""Student networks trained to put LR faces into the teacher's embedding space.

Every student is an ``nn.Module`` taking float RGB ``N x 3 x H x W`` in [0, 255] (the encoder
convention) and returning raw ``N x dim`` embeddings; with ``return_features=True`` it returns
``(embedding, [stage outputs])`` (``supports_features``; ``feature_channels`` gives each stage's
width), for NST and hint losses that match the teacher's stages. Each declares ``input_size``:
the data pipeline and ``FaceEncoder.embed`` bring LR chips to that size with bicubic, and
``forward`` resizes anything else the same way so a module is usable on its own.

* ``teacher-init``: dlib's ResNet started from the teacher's weights, fed LR faces upsampled
  to 150 px. Its frozen-BN "affine" layers become trainable scale/shift by default.
* ``compact``: a small ResNet-style CNN (BN + PReLU, ~1.6M parameters, ~20M multiply-adds)
  that reads the face natively at 32x32, trained from scratch by transfer.

``EnsembleStudent`` averages students trained apart (``lrface train --members K``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lrface.registry import Registry

STUDENTS: Registry[Callable[..., nn.Module]] = Registry("student")
register_student = STUDENTS.register
"""Decorator: make a student factory available to ``create_student(name, **kwargs)``."""


def list_students() -> list[str]:
    return STUDENTS.names()


def create_student(name: str, **kwargs) -> nn.Module:
    """Build a registered student; it carries ``input_size``, ``dim``, ``supports_features``."""
    return STUDENTS.get(name)(**kwargs)


def resize_input(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic resize of ``N x 3 x H x W`` in [0, 255] to ``size`` (no-op when already there)."""
    if x.shape[-2:] == (size, size):
        return x
    shrinking = x.shape[-1] > size
    x = F.interpolate(
        x, size=(size, size), mode="bicubic", align_corners=False, antialias=shrinking
    )
    return x.clamp(0.0, 255.0)


class ConvBNPReLU(nn.Sequential):
    """3x3 (or ``kernel``) convolution, batch norm, per-channel PReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel: int = 3):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.PReLU(out_ch),
        )


class BasicBlock(nn.Module):
    """Residual block: conv-BN-PReLU-conv-BN plus (projected) shortcut, then PReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBNPReLU(in_ch, out_ch, stride)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn2(self.conv2(self.conv1(x))) + self.shortcut(x))


class CommonComponent(nn.Module):
    """Pins an embedding's projection on the teacher's common direction to the teacher's value.

    dlib's space is compressed around one direction ``m`` (every HR face projects ~0.91 on
    it), so identity lives in the part orthogonal to ``m``. A student whose LR embeddings
    spread along ``m`` shifts every raw-cosine score by an amount unrelated to identity
    (docs/experiments/history.md, 3d). The output is ``a m + sqrt(1 - a^2) u``: ``u`` the
    unit part of the input orthogonal to ``m``, ``a`` the teacher's mean projection. Both are
    buffers saved with the student; until ``set_direction`` fills them (zeros) the module passes
    its input through.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("direction", torch.zeros(dim))
        self.register_buffer("projection", torch.zeros(()))

    @torch.no_grad()
    def set_direction(self, teacher_emb: torch.Tensor) -> None:
        """Direction and projection from the teacher's embeddings of the training faces."""
        unit = F.normalize(teacher_emb.float(), dim=1)
        direction = F.normalize(unit.mean(0), dim=0)
        self.direction.copy_(direction)
        self.projection.copy_((unit @ direction).mean())

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        if not self.projection:
            return embedding
        unit = F.normalize(embedding.float(), dim=1)
        across = F.normalize(unit - (unit @ self.direction)[:, None] * self.direction, dim=1)
        a = self.projection
        return a * self.direction + torch.sqrt(1 - a * a) * across


class CompactStudent(nn.Module):
    """Small CNN for LR faces at ``input_size`` (32) px.

    Stem: stride-2 3x3 conv (32 -> 16 px; 27 inputs to 32 channels loses nothing). Stages: the
    first keeps 16 px, each later one halves (8, 4, 2 px). Head as in ArcFace's "E" output:
    BN, dropout, fully connected on the flattened map, BN. Input [0, 255] is scaled to about
    [-1, 1] inside, so the module follows the encoder convention. With the default widths the
    stage outputs have the teacher's widths (32/64/128/256) at 16/8/4/2 px, the sizes the
    cached teacher maps of ``train.teacher_maps`` are pooled to. ``fix_common`` ends the head
    with a ``CommonComponent`` (the trainer sets its direction from the teacher's embeddings).
    """

    supports_features = True

    def __init__(
        self,
        dim: int = 128,
        widths: Sequence[int] = (32, 64, 128, 256),
        depths: Sequence[int] = (1, 1, 2, 1),
        input_size: int = 32,
        dropout: float = 0.0,
        fix_common: bool = False,
    ):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError("widths and depths need one entry per stage")
        if input_size % 2 ** len(widths):
            raise ValueError(f"input_size must be divisible by {2 ** len(widths)}")
        self.dim = dim
        self.input_size = input_size
        self.feature_channels = tuple(widths)
        self.stem = ConvBNPReLU(3, widths[0], stride=2)
        stages, channels = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = [BasicBlock(channels, width, stride=1 if i == 0 else 2)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.stages = nn.Sequential(*stages)
        final = input_size // 2 ** len(widths)
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(channels * final * final, dim),
            nn.BatchNorm1d(dim),
        )
        self.common = CommonComponent(dim) if fix_common else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, return_features: bool = False):
        x = self.stem((resize_input(x, self.input_size) - 127.5) / 128.0)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        embedding = self.head(x)
        if self.common is not None:
            embedding = self.common(embedding)
        return (embedding, features) if return_features else embedding


@register_student("compact")
def compact(**kwargs) -> CompactStudent:
    return CompactStudent(**kwargs)


class EnsembleStudent(nn.Module):
    """Students trained apart (different seeds), averaged: the unit mean of unit embeddings.

    A small student trained on LFW memorizes its training identities, and runs with different
    seeds memorize differently; averaging their embeddings cancels much of that (View 1:
    docs/experiments/history.md, 3g). Built from finished runs by
    ``models.checkpoint.load_student``; not trained as one module.
    """

    supports_features = False

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        sizes = {m.input_size for m in members}
        dims = {m.dim for m in members}
        if len(sizes) > 1 or len(dims) > 1:
            raise ValueError(f"members disagree: input sizes {sizes}, dims {dims}")
        self.members = nn.ModuleList(members)
        self.input_size = sizes.pop()
        self.dim = dims.pop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = sum(F.normalize(member(x).float(), dim=1) for member in self.members)
        return F.normalize(total, dim=1)


TEACHER_INIT_MIN_INPUT = 104
"""Smallest input dlib's ResNet takes (measured: 104 px runs, 102 px leaves the last stage no
room for its 3x3 convolutions)."""


class TeacherInitStudent(nn.Module):
    """dlib's ResNet as a student: LR faces upsampled (bicubic) to 150 px, same layers.

    ``pretrained`` starts from the teacher's weights (the usual choice; ``False`` gives a
    randomly initialized net of the same shape, e.g. to load a checkpoint into).
    ``freeze_affine`` keeps dlib's "affine" layers (its inference-time batch norm, a fixed
    per-channel scale and shift) at the teacher's values; by default they train like any
    scale/shift, which lets the student re-normalize activations of upsampled LR inputs.
    Its stage features have the teacher's shapes, so it supports NST.
    ``input_size`` below 150 (e.g. 112) runs the same layers on a smaller upsampled face (the
    net ends in a global average pool): fewer operations per face, at an accuracy only training
    at that size can tell (issue 30, lever 5). dlib's unpadded convolutions leave a 2x2 map
    at 150 px, so nothing below ``TEACHER_INIT_MIN_INPUT`` (104 px) fits.
    """

    supports_features = True

    def __init__(
        self,
        pretrained: bool = True,
        freeze_affine: bool = False,
        weights: str | None = None,
        input_size: int | None = None,
    ):
        super().__init__()
        from lrface.models.dlib_resnet import (
            INPUT_SIZE,
            STAGES,
            Affine,
            DlibResNet,
            load_dlib_resnet,
        )

        if input_size is not None and input_size < TEACHER_INIT_MIN_INPUT:
            raise ValueError(
                f"teacher-init needs an input of at least {TEACHER_INIT_MIN_INPUT} px (dlib's "
                f"unpadded convolutions leave no map below it), got {input_size}"
            )
        self.net = load_dlib_resnet(weights) if pretrained else DlibResNet()
        self.input_size = INPUT_SIZE if input_size is None else input_size
        self.feature_channels = tuple(width for width, _ in STAGES)
        self.dim = self.net.fc.out_features
        for module in self.net.modules():
            if isinstance(module, Affine):
                module.requires_grad_(not freeze_affine)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        return self.net(resize_input(x, self.input_size), return_features=return_features)


@register_student("teacher-init")
def teacher_init(**kwargs) -> TeacherInitStudent:
    return TeacherInitStudent(**kwargs)
