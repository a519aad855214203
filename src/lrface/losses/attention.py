"""Attention-similarity knowledge distillation (A-SKD): where the student looks on an LR face.

Shin et al., "Teaching Where to Look: Attention Similarity Knowledge Distillation for Low
Resolution Face Recognition", ECCV 2022 (arXiv 2209.14498). The teacher's attention maps on
the HR face are the target of the student's on the LR face, compared by cosine similarity, so
only where the attention goes counts, not its scale (the paper: an LR face's features are
weaker everywhere, while the informative regions stay the same).

The paper reads the maps from CBAM modules present in both networks. dlib's ResNet has none,
so here the maps are parameter-free readings of each stage's features (the teacher-init
student has the same stages, so its maps line up with the teacher's one for one):

* spatial: ``mean_c(F^2)`` over the channels at each position (the activation-based attention
  map of Zagoruyko & Komodakis, ICLR 2017), ``N x HW``;
* channel: ``mean_hw(|F|)``, each channel's mean absolute response, ``N x C`` (CBAM's
  average-pooled channel descriptor before its MLP).

Loss: the mean over the chosen stages of ``1 - cos(student map, teacher map)``, averaged over
the batch, for the spatial maps and (``channel``) the channel maps. 0 when the student attends
exactly where the teacher does, at most 2. It needs the frozen teacher run on the HR faces in
every step (``teacher_features``), which adds one no-grad teacher pass to each step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.mmd import match_spatial
from lrface.losses.registry import register_loss


def spatial_attention(features: torch.Tensor) -> torch.Tensor:
    """``N x C x H x W`` -> ``N x HW``: mean squared activation over the channels."""
    return features.pow(2).mean(1).flatten(1)


def channel_attention(features: torch.Tensor) -> torch.Tensor:
    """``N x C x H x W`` -> ``N x C``: mean absolute activation of each channel."""
    return features.abs().mean((2, 3))


def attention_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``1 - cos`` between two ``N x K`` sets of attention maps."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=1, eps=1e-8)).mean()


@register_loss("askd")
class AttentionSimilarityLoss(TransferLoss):
    """A-SKD (see the module): ``1 - cos`` between student (LR) and teacher (HR) attention.

    layers: which stage outputs to compare (indices into the feature lists; all when None).
    channel: also compare channel attention (the stages' channel counts must then match, as
        for the teacher-init student).
    """

    name = "askd"
    needs = ("student_features", "teacher_features")

    def __init__(self, weight: float = 1.0, layers: list[int] | None = None, channel: bool = True):
        super().__init__(weight)
        self.layers = None if layers is None else tuple(layers)
        self.channel = channel

    def forward(self, outputs: TransferOutputs) -> torch.Tensor:
        student, teacher = outputs.student_features, outputs.teacher_features
        if not student or len(student) != len(teacher):
            raise ValueError(
                f"A-SKD needs one student map per teacher map, got {len(student)} and "
                f"{len(teacher)}"
            )
        chosen = range(len(student)) if self.layers is None else self.layers
        terms = []
        for stage in chosen:
            s, t = match_spatial(student[stage], teacher[stage])
            terms.append(attention_distance(spatial_attention(s), spatial_attention(t)))
            if self.channel:
                if s.shape[1] != t.shape[1]:
                    raise ValueError(
                        f"stage {stage}: channel attention needs equal channel counts, got "
                        f"{s.shape[1]} (student) and {t.shape[1]} (teacher); use channel=False"
                    )
                terms.append(attention_distance(channel_attention(s), channel_attention(t)))
        return torch.stack(terms).mean()
