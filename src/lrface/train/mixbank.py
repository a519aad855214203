"""Blended training faces with the teacher's own embeddings of them ("function matching").

Why: a compact student trained from scratch on LFW's ~10k training faces memorizes their
teacher embeddings (View 1, 16 px: 97.8% on the training people's pairs, 87.8% on new
people's). A pixel blend ``alpha * a + (1 - alpha) * b`` of two aligned chips is a face that
exists nowhere in the data, and the teacher's embedding of it is a valid target all the
same: the student learns the teacher's function around the data, not only at its ~10k
points (Beyer et al., "Knowledge distillation: A good teacher is patient and consistent",
CVPR 2022, where mixup was the augmentation that let students match the teacher on small
data sets). The dlib teacher barely moves under jitter or a light blend, so blends are drawn
with ``alpha`` in a middle range where its embedding does change.

A bank is built once per (teacher, chips, count, seed, alpha range): pairs of chip rows and
blend weights drawn from the seed, and the teacher's flip-averaged embedding of each blend
(so a blend may be mirrored in training like any chip). It is cached as safetensors under
``<cache>/mixbank/<teacher key>/<align key>/``, named by a digest of everything that fixes it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from lrface.data.chips import ChipSet
from lrface.models.encoder import FaceEncoder
from lrface.paths import cache_dir

BATCH = 256


def blend(first: np.ndarray, second: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * first + (1 - alpha) * second`` of two uint8 chips, rounded to uint8."""
    mixed = alpha * first.astype(np.float32) + (1.0 - alpha) * second.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class MixBank:
    """``K`` blends: chip rows ``first[k]``, ``second[k]``, weight ``alpha[k]`` of the first,
    and the teacher's flip-averaged unit embedding ``teacher_emb[k]`` of the blend."""

    first: np.ndarray
    second: np.ndarray
    alpha: np.ndarray
    teacher_emb: np.ndarray

    def __len__(self) -> int:
        return len(self.alpha)

    def chip(self, hr_chips: np.ndarray, k: int) -> np.ndarray:
        """The HR blend ``k`` (``H x W x 3`` uint8) of the training chips it was drawn from."""
        return blend(hr_chips[self.first[k]], hr_chips[self.second[k]], float(self.alpha[k]))


def draw_blends(
    num_chips: int, count: int, seed: int, alpha_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, second, alpha)``: ``count`` pairs of distinct rows and their blend weights."""
    if num_chips < 2:
        raise ValueError("blending needs at least two training chips")
    low, high = alpha_range
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"alpha range must lie in [0, 1] with low <= high, got {alpha_range}")
    rng = np.random.default_rng((seed, 0x61))
    first = rng.integers(0, num_chips, count)
    # A shift in 1..n-1 makes the second row differ from the first.
    second = (first + rng.integers(1, num_chips, count)) % num_chips
    alpha = rng.uniform(low, high, count).astype(np.float32)
    return first.astype(np.int64), second.astype(np.int64), alpha


def _cache_path(
    teacher: FaceEncoder, chipset: ChipSet, count: int, seed: int, alpha_range: tuple
) -> object:
    digest = hashlib.sha1()
    for key in chipset.keys:
        digest.update(bytes.fromhex(key))
    digest.update(repr((count, seed, tuple(float(a) for a in alpha_range))).encode())
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", teacher.cache_key)
    align = chipset.align_key or "unaligned"
    return cache_dir() / "mixbank" / safe / align / f"{digest.hexdigest()[:16]}.safetensors"


def build_mix_bank(
    teacher: FaceEncoder,
    chipset: ChipSet,
    count: int,
    seed: int = 0,
    alpha_range: tuple[float, float] = (0.3, 0.7),
    cache: bool = True,
    progress: bool = True,
) -> MixBank:
    """Draw ``count`` blends of ``chipset``'s chips and embed each with ``teacher`` (cached)."""
    first, second, alpha = draw_blends(len(chipset), count, seed, alpha_range)
    path = _cache_path(teacher, chipset, count, seed, alpha_range)
    if cache and path.is_file():
        stored = load_file(str(path))
        if np.array_equal(stored["first"], first) and np.array_equal(stored["second"], second):
            return MixBank(first, second, alpha, stored["teacher_emb"])
    chips = chipset.chips
    embeddings = []
    with tqdm(total=count, desc="teacher on blends", unit="face", disable=not progress) as bar:
        for start in range(0, count, BATCH):
            span = range(start, min(count, start + BATCH))
            batch = np.stack([blend(chips[first[k]], chips[second[k]], alpha[k]) for k in span])
            embeddings.append(teacher.embed(batch, flip=True))
            bar.update(len(span))
    teacher_emb = (
        np.concatenate(embeddings) if embeddings else np.zeros((0, teacher.dim), np.float32)
    )
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file(
            {"first": first, "second": second, "alpha": alpha, "teacher_emb": teacher_emb},
            str(tmp),
        )
        tmp.replace(path)
    return MixBank(first, second, alpha, teacher_emb)
