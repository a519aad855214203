"""The encoder interface: a batch of aligned face chips in, L2-normalized embeddings out.

Chip convention (the whole project): RGB uint8 arrays ``N x H x W x 3`` aligned like dlib's
``get_face_chip(size=150, padding=0.25)``. An encoder accepts chips of any square size and
resizes them to its own ``input_size`` with its named ``upsample`` kernel, so a low-resolution
probe (``s x s``) goes in as it is and each encoder brings it to what it was built for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from lrface.resize import resize_chips
from lrface.vectors import l2_normalize


class FaceEncoder(ABC):
    """Maps aligned face chips to L2-normalized embeddings."""

    name: str = "encoder"
    input_size: int = 150
    dim: int = 128
    upsample: str = "bicubic"
    teacher: str | None = None
    """For a student: the encoder whose HR embeddings it was trained to match (its gallery)."""
    size_cutoff: float | None = None
    """For a student: the face width (px) under which it beats its teacher, by its measurements;
    pipelines route narrower faces to it when no cutoff is given."""

    def __init__(self, batch_size: int = 64, device: str = "cpu"):
        self.batch_size = batch_size
        self.device = device

    @property
    def cache_key(self) -> str:
        """Identifies the encoder and its weights, for embedding caches."""
        return self.name

    def embed(self, chips: np.ndarray, flip: bool = False) -> np.ndarray:
        """Embed ``N x H x W x 3`` uint8 chips; with ``flip`` average with the mirrored chip."""
        chips = resize_chips(chips, self.input_size, self.upsample)
        out = []
        for start in range(0, len(chips), self.batch_size):
            batch = chips[start : start + self.batch_size]
            if flip:  # one call for both: cheaper than two at small batches
                both = self._embed_batch(np.concatenate([batch, batch[:, :, ::-1]]))
                emb = both[: len(batch)] + both[len(batch) :]
            else:
                emb = self._embed_batch(batch)
            out.append(l2_normalize(emb))
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(out)

    @abstractmethod
    def _embed_batch(self, chips: np.ndarray) -> np.ndarray:
        """Raw embeddings of chips already at ``input_size``."""


class TorchEncoder(FaceEncoder):
    """A FaceEncoder around an ``nn.Module`` that takes float RGB ``N x 3 x H x W`` in [0, 255]."""

    def __init__(
        self,
        module: torch.nn.Module,
        name: str,
        input_size: int,
        dim: int,
        batch_size: int = 64,
        device: str = "cpu",
        key: str | None = None,
    ):
        super().__init__(batch_size=batch_size, device=device)
        self.module = module.to(device).eval()
        self.name = name
        self.input_size = input_size
        self.dim = dim
        self._key = key or name

    @property
    def cache_key(self) -> str:
        return self._key

    @torch.inference_mode()
    def _embed_batch(self, chips: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(chips)).to(self.device)
        x = x.permute(0, 3, 1, 2).float()
        return self.module(x).float().cpu().numpy()


def chips_to_tensor(chips: np.ndarray) -> torch.Tensor:
    """``N x H x W x 3`` uint8 -> float ``N x 3 x H x W`` in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()
