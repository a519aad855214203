"""Embeddings of a ChipSet under a degradation, cached per encoder and degradation.

Cache file: ``<cache>/embeddings/<encoder key>/<align key>/<degradation key>[-flip].safetensors``
(the align key names the chips' ``AlignSettings``; chips built by hand have none) with two
tensors, ``keys`` (``N x 20`` uint8, the sha1 of each source image) and ``embeddings``
(``N x D`` float32). New chips are embedded and merged in; nothing is recomputed.
"""

from __future__ import annotations

import os
import re

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from lrface.data.chips import ChipSet
from lrface.data.degrade import EvalDegradation
from lrface.models.encoder import FaceEncoder
from lrface.paths import cache_dir, readable_by_umask

CHUNK = 512


def _cache_file(encoder: FaceEncoder, degradation: EvalDegradation, flip: bool, align_key: str):
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", encoder.cache_key)
    name = degradation.key + ("-flip" if flip else "")
    return cache_dir() / "embeddings" / safe / (align_key or "unaligned") / f"{name}.safetensors"


def load_keyed(path, name: str = "embeddings") -> dict[bytes, np.ndarray]:
    """``{sha1 bytes: row}`` from a cache file of ``keys`` and ``name`` rows (empty if absent)."""
    if not path.is_file():
        return {}
    tensors = load_file(str(path))
    return {k.tobytes(): v for k, v in zip(tensors["keys"], tensors[name], strict=True)}


def save_keyed(path, known: dict[bytes, np.ndarray], name: str = "embeddings") -> None:
    """Write ``known`` atomically (temporary file, then rename) as ``keys`` and ``name``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = np.frombuffer(b"".join(known), dtype=np.uint8).reshape(len(known), 20)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    # C order explicitly: safetensors writes an array's memory as it lies, so a row taken from
    # a channels-last tensor would come back scrambled.
    values = np.ascontiguousarray(np.stack(list(known.values())))
    save_file({"keys": keys, name: values}, str(tmp))
    readable_by_umask(tmp)
    os.replace(tmp, path)


def embed_chipset(
    encoder: FaceEncoder,
    chipset: ChipSet,
    degradation: EvalDegradation,
    flip: bool = False,
    cache: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """``len(chipset) x D`` embeddings of the degraded chips, in chipset order."""
    path = _cache_file(encoder, degradation, flip, chipset.align_key)
    known = load_keyed(path) if cache else {}
    raw_keys = [bytes.fromhex(k) for k in chipset.keys]
    missing = [row for row, key in enumerate(raw_keys) if key not in known]
    if missing:
        desc = f"embed {encoder.name} {degradation.key}{' flip' if flip else ''}"
        with tqdm(
            total=len(missing), desc=desc, unit="face", disable=not progress, leave=False
        ) as bar:
            for start in range(0, len(missing), CHUNK):
                rows = missing[start : start + CHUNK]
                keys = [chipset.keys[row] for row in rows]
                vectors = encoder.embed(degradation(chipset.chips[rows], keys), flip=flip)
                for row, vector in zip(rows, vectors, strict=True):
                    known[raw_keys[row]] = vector
                bar.update(len(rows))
                if cache:
                    save_keyed(path, known)
    if not len(chipset):
        return np.zeros((0, encoder.dim), np.float32)
    return np.stack([known[key] for key in raw_keys]).astype(np.float32)
