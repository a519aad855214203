"""The teacher's stage feature maps of the training chips, pooled small and cached.

Targets for hint losses (``losses.hint``): running the 150 px teacher in every training step
would cut a compact student's throughput several times over, while its maps of a chip never
change. Each stage's output (32/64/128/256 channels at 35/17/8/2 px) is average-pooled to
``HINT_GRIDS`` (16/8/4/2 px: the compact student's stage sizes at its 32 px input) for the chip
and for its mirror image, since training flips chips at random and a flipped face needs the
maps of the flipped face, not mirrored maps.

Cache: ``<cache>/teacher_maps/<teacher key>/<align key>/stage<s>-g<grid>.safetensors``, rows
``2 x C x g x g`` float16 (original, mirrored) per source-file sha1, merged like the embedding
cache. ``standardize_channels`` scales each channel to zero mean and unit variance over the
training rows, so that every channel counts in a mean-squared hint loss, whatever its scale.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lrface.data.chips import ChipSet
from lrface.eval.embeddings import load_keyed, save_keyed
from lrface.models.encoder import TorchEncoder, chips_to_tensor
from lrface.paths import cache_dir

HINT_GRIDS = (16, 8, 4, 2)
BATCH = 64
SAVE_EVERY = 2048


def _cache_file(encoder: TorchEncoder, align_key: str, stage: int):
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", encoder.cache_key)
    name = f"stage{stage}-g{HINT_GRIDS[stage]}.safetensors"
    return cache_dir() / "teacher_maps" / safe / (align_key or "unaligned") / name


@torch.inference_mode()
def _maps_of(encoder: TorchEncoder, chips: np.ndarray, stages: Sequence[int]) -> list[np.ndarray]:
    """Per stage: ``N x 2 x C x g x g`` float16 maps of the chips and of their mirror images."""
    x = chips_to_tensor(chips).to(encoder.device)
    per_view = []
    for view in (x, x.flip(-1)):
        _, features = encoder.module(view, return_features=True)
        per_view.append([F.adaptive_avg_pool2d(features[s].float(), HINT_GRIDS[s]) for s in stages])
    return [
        np.ascontiguousarray(torch.stack([per_view[0][i], per_view[1][i]], 1).cpu().numpy()).astype(
            np.float16
        )
        for i in range(len(stages))
    ]


def teacher_stage_maps(
    encoder: TorchEncoder,
    chipset: ChipSet,
    stages: Sequence[int],
    cache: bool = True,
    progress: bool = True,
) -> list[np.ndarray]:
    """Per requested stage: ``len(chipset) x 2 x C x g x g`` float16, in chipset order.

    encoder: the teacher as a ``TorchEncoder`` whose module returns stage features
    (``dlib-resnet-torch``); chips must already be at its input size.
    """
    if any(not 0 <= s < len(HINT_GRIDS) for s in stages):
        raise ValueError(f"teacher stages are 0..{len(HINT_GRIDS) - 1}, got {list(stages)}")
    if len(chipset) and chipset.chips.shape[1] != encoder.input_size:
        raise ValueError(
            f"chips are {chipset.chips.shape[1]} px; the teacher's maps need "
            f"{encoder.input_size} px HR chips"
        )
    paths = [_cache_file(encoder, chipset.align_key, s) for s in stages]
    known = [load_keyed(p, "maps") if cache else {} for p in paths]
    raw_keys = [bytes.fromhex(k) for k in chipset.keys]
    missing = [r for r, key in enumerate(raw_keys) if any(key not in k for k in known)]
    with tqdm(
        total=len(missing), desc="teacher maps", unit="face", disable=not progress, leave=False
    ) as bar:
        for start in range(0, len(missing), BATCH):
            rows = missing[start : start + BATCH]
            fresh = _maps_of(encoder, chipset.chips[rows], stages)
            for known_stage, maps in zip(known, fresh, strict=True):
                known_stage.update((raw_keys[row], m) for row, m in zip(rows, maps, strict=True))
            bar.update(len(rows))
            done = start + len(rows)
            if cache and (done % SAVE_EVERY == 0 or done == len(missing)):
                for path, known_stage in zip(paths, known, strict=True):
                    save_keyed(path, known_stage, "maps")
    return [
        np.stack([k[key] for key in raw_keys]) if len(raw_keys) else np.zeros((0,), np.float16)
        for k in known
    ]


def standardize_channels(maps: np.ndarray) -> np.ndarray:
    """``N x 2 x C x g x g`` maps with each channel at zero mean, unit variance (float16).

    Statistics over rows, both views and all positions; constant channels keep scale 1.
    """
    values = maps.astype(np.float32)
    mean = values.mean(axis=(0, 1, 3, 4), keepdims=True)
    std = values.std(axis=(0, 1, 3, 4), keepdims=True)
    return ((values - mean) / np.where(std > 1e-6, std, 1.0)).astype(np.float16)
