"""Extra HR training views, each with the teacher's own embedding of it ("function matching").

LFW gives a student ~10k training faces; a compact student trained from scratch memorizes
their teacher embeddings (View 1, 16 px: 97.8% on training pairs, 87.8% on test pairs). Here
every training chip gets ``count`` augmented copies: a similarity jitter, colour changes and,
with ``mix_prob``, a blend with another training face. The teacher embeds each copy, and the
student learns from the copy's LR version against that embedding, so student and teacher
always see the same face (Beyer et al., "Knowledge distillation: a good teacher is patient
and consistent", CVPR 2022). Augmenting the LR side alone against the original chip's target
would teach the student to ignore real differences; that is why this lives on the HR side.

A view is a pure function of ``(spec, row, k)``, so the views, and hence the cached teacher
embeddings keyed by the spec and the source chips, are the same in every run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageEnhance
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from lrface.data.chips import ChipSet
from lrface.data.degrade import similarity_jitter
from lrface.models.encoder import FaceEncoder
from lrface.paths import cache_dir

_VIEW = 0x91


@dataclass(frozen=True)
class TeacherViews:
    """How many augmented HR views per training chip, and how they are made.

    count: views per chip (0: none, the original chips only).
    mix_prob / mix_max: probability of blending in another training face, and the largest
        weight it gets (drawn uniformly in ``[0, mix_max]``); the view keeps the original's label.
    shift / scale / degrees: similarity jitter (fraction of the side, relative scale, degrees).
    brightness / contrast / saturation: each factor drawn in ``1 +- value``.
    gray_prob: probability of a greyscale view.
    seed: the views' own seed (independent of the run's, so runs share the cached embeddings).
    """

    count: int = 0
    mix_prob: float = 0.5
    mix_max: float = 0.4
    shift: float = 0.03
    scale: float = 0.05
    degrees: float = 5.0
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.4
    gray_prob: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"views count must be >= 0, got {self.count}")
        if not 0.0 <= self.mix_max <= 0.5:
            raise ValueError(
                f"mix_max must be in [0, 0.5] (the original stays dominant), got {self.mix_max}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def make_view(chips: np.ndarray, row: int, k: int, spec: TeacherViews) -> np.ndarray:
    """View ``k`` (1-based) of ``chips[row]``: an ``H x W x 3`` uint8 chip."""
    rng = np.random.default_rng((spec.seed, _VIEW, int(row), int(k)))
    chip = chips[row].astype(np.float32)
    if len(chips) > 1 and rng.random() < spec.mix_prob:
        partner = int(rng.integers(len(chips) - 1))
        partner += partner >= row
        weight = rng.uniform(0.0, spec.mix_max)
        chip = (1.0 - weight) * chip + weight * chips[partner].astype(np.float32)
    img = Image.fromarray(np.clip(chip + 0.5, 0, 255).astype(np.uint8))
    img = similarity_jitter(img, rng, spec.shift, spec.scale, spec.degrees)
    for enhance, amount in (
        (ImageEnhance.Brightness, spec.brightness),
        (ImageEnhance.Contrast, spec.contrast),
        (ImageEnhance.Color, spec.saturation),
    ):
        img = enhance(img).enhance(1.0 + rng.uniform(-amount, amount))
    if rng.random() < spec.gray_prob:
        img = img.convert("L").convert("RGB")
    return np.asarray(img)


def make_views(chips: np.ndarray, spec: TeacherViews) -> np.ndarray:
    """All views: ``count * N`` chips, view ``k`` of every chip before view ``k + 1``."""
    out = np.empty((spec.count * len(chips), *chips.shape[1:]), np.uint8)
    for k in range(1, spec.count + 1):
        for row in range(len(chips)):
            out[(k - 1) * len(chips) + row] = make_view(chips, row, k, spec)
    return out


def _cache_file(teacher: FaceEncoder, chipset: ChipSet, spec: TeacherViews, flip: bool):
    digest = hashlib.sha1()
    digest.update(json.dumps([teacher.cache_key, spec.to_dict(), flip]).encode())
    digest.update(chipset.align_key.encode())
    digest.update("".join(chipset.keys).encode())
    return cache_dir() / "views" / f"{digest.hexdigest()}.safetensors"


def teacher_views(
    teacher: FaceEncoder,
    chipset: ChipSet,
    spec: TeacherViews,
    flip: bool = True,
    cache: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(views, teacher embeddings of them)`` of a chipset's chips; the embeddings are cached
    per teacher, spec and chipset (its source files and alignment).

    flip: flip-average the teacher's embeddings (as for the original chips when training
        with random flips).
    """
    views = make_views(chipset.chips, spec)
    path = _cache_file(teacher, chipset, spec, flip)
    if cache and path.is_file():
        emb = load_file(str(path))["embeddings"]
        if len(emb) == len(views):
            return views, emb
    chunk = 512
    parts = [
        teacher.embed(views[start : start + chunk], flip=flip)
        for start in tqdm(
            range(0, len(views), chunk),
            desc=f"embed {len(views)} teacher views",
            unit="chunk",
            disable=not progress,
            leave=False,
        )
    ]
    emb = np.concatenate(parts).astype(np.float32)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file({"embeddings": emb}, str(tmp))
        os.replace(tmp, path)
    return views, emb
