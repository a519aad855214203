"""Resizing chips with a named, anti-aliased PIL kernel: how every degradation shrinks a face
and every encoder brings it up to its input size. Ground floor: imports nothing from lrface."""

from __future__ import annotations

import numpy as np
from PIL import Image

KERNELS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


def kernel_filter(name: str) -> Image.Resampling:
    """The PIL filter of kernel ``name``; ValueError naming the choices."""
    if name not in KERNELS:
        raise ValueError(f"unknown resize kernel {name!r}; choose one of {sorted(KERNELS)}")
    return KERNELS[name]


def resize_chip(chip: np.ndarray, size: int, kernel: str) -> np.ndarray:
    """Resize one ``H x W x 3`` uint8 chip to ``size x size`` (PIL, anti-aliased when shrinking)."""
    if chip.shape[0] == size and chip.shape[1] == size:
        return chip
    return np.asarray(Image.fromarray(chip).resize((size, size), kernel_filter(kernel)))


def resize_chips(chips: np.ndarray, size: int, kernel: str) -> np.ndarray:
    """Resize a ``N x H x W x 3`` batch; returned as is when already ``size``."""
    if chips.ndim != 4 or chips.shape[-1] != 3:
        raise ValueError(f"expected chips of shape N x H x W x 3, got {chips.shape}")
    if chips.shape[1] == size and chips.shape[2] == size:
        return chips
    out = np.empty((len(chips), size, size, 3), np.uint8)
    for i, chip in enumerate(chips):
        out[i] = resize_chip(chip, size, kernel)
    return out
