"""Training batches: HR source (teacher embeddings, labels) and LR target made on the fly.

Every batch is a pure function of ``(seed, step, rank)``: the epoch's shuffle comes from an RNG
seeded by ``(seed, epoch)`` and each sample's flip and degradation from one seeded by
``(seed, epoch, row)``. Nothing is carried between batches, so a resumed run sees exactly the
batches it would have seen, whatever the number of loader workers.

Sharding (DDP): step ``i`` of an epoch takes the ``batch_size * world_size`` positions
``[i * B * W, (i + 1) * B * W)`` of the shuffle and rank ``r`` the ``r``-th slice of ``B``:
the DistributedSampler split, without its state. The last partial global batch is dropped.

Flip: with ``flip`` the HR chip and its LR version are mirrored together at random. The
teacher targets must then be mirror-symmetric (the teacher's flip-averaged embeddings), since
the same target row serves both orientations; otherwise pass ``flip=False``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lrface.data.degrade import TrainDegradation, resize_chip
from lrface.data.detected import DetectedFaces

_SHUFFLE_TARGET = 0x7A
_SHUFFLE_SOURCE = 0x5C
_SAMPLE = 0x3D


class TransferStream:
    """Batches of ``lr`` (student input), ``teacher``, ``labels`` and optionally ``hr``.

    hr_chips: ``M x 150 x 150 x 3`` uint8; teacher_emb: ``M x D`` float; labels: ``M`` ints.
    input_size: the student's; LR faces are brought to it with ``upsample`` (the kernel
        ``FaceEncoder.embed`` uses, so training and evaluation see the same pixels).
    pairing: ``paired`` (row i of teacher/labels/hr is the image of lr row i) or
        ``unpaired`` (they come from an independent shuffle of the source).
    with_hr: also return the (flipped) HR chips, for losses that run the teacher or an HR
        branch on them.
    teacher_maps: ``{stage: M x 2 x C x g x g}`` teacher maps of each chip (view 0) and its
        mirror image (view 1); batches then carry ``teacher_map<stage>`` of the source rows in
        the orientation each was drawn in.
    detected / detected_prob: with this probability a target row's LR input is its detected
        version (``DetectedFaces.chip``, at one of the widths where it was found, mirrored
        with the row) instead of a degradation of its HR chip.
    """

    def __init__(
        self,
        hr_chips: np.ndarray,
        teacher_emb: np.ndarray,
        labels: np.ndarray,
        degradation: TrainDegradation,
        input_size: int,
        batch_size: int,
        seed: int = 0,
        pairing: str = "paired",
        flip: bool = True,
        with_hr: bool = False,
        teacher_maps: dict[int, np.ndarray] | None = None,
        upsample: str = "bicubic",
        rank: int = 0,
        world_size: int = 1,
        detected: DetectedFaces | None = None,
        detected_prob: float = 0.0,
    ):
        if not len(hr_chips) == len(teacher_emb) == len(labels):
            raise ValueError("hr_chips, teacher_emb and labels need the same length")
        if pairing not in ("paired", "unpaired"):
            raise ValueError(f"pairing must be 'paired' or 'unpaired', got {pairing!r}")
        self.hr_chips = hr_chips
        self.teacher_emb = np.asarray(teacher_emb, np.float32)
        self.labels = np.asarray(labels, np.int64)
        self.degradation = degradation
        self.input_size = input_size
        self.batch_size = batch_size
        self.seed = seed
        self.pairing = pairing
        self.flip = flip
        self.with_hr = with_hr
        self.teacher_maps = teacher_maps or {}
        self.upsample = upsample
        self.rank = rank
        self.world_size = world_size
        if detected_prob and (detected is None or len(detected) != len(hr_chips)):
            raise ValueError("detected_prob needs detected faces, one row per HR chip")
        self.detected = detected
        self.detected_prob = detected_prob
        self.steps_per_epoch = len(hr_chips) // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(hr_chips)} training faces cannot fill one global batch of "
                f"{batch_size} x {world_size}"
            )
        self._cached_epoch: int | None = None
        self._perms: tuple[np.ndarray, np.ndarray] | None = None

    def _permutations(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cached_epoch != epoch:
            n = len(self.hr_chips)
            target = np.random.default_rng((self.seed, epoch, _SHUFFLE_TARGET)).permutation(n)
            source = target
            if self.pairing == "unpaired":
                source = np.random.default_rng((self.seed, epoch, _SHUFFLE_SOURCE)).permutation(n)
            self._cached_epoch, self._perms = epoch, (target, source)
        return self._perms

    def rows(self, step: int) -> tuple[int, np.ndarray, np.ndarray]:
        """``(epoch, target rows, source rows)`` of this rank's share of global step ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        target, source = self._permutations(epoch)
        start = (within * self.world_size + self.rank) * self.batch_size
        span = slice(start, start + self.batch_size)
        return epoch, target[span], source[span]

    def _flip(self, epoch: int, row: int) -> tuple[bool, np.random.Generator]:
        rng = np.random.default_rng((self.seed, epoch, _SAMPLE, int(row)))
        return bool(self.flip and rng.random() < 0.5), rng

    def _detected_chip(
        self, row: int, flipped: bool, rng: np.random.Generator
    ) -> np.ndarray | None:
        """The row's detected version with probability ``detected_prob`` (None otherwise or
        when it has none); draws from ``rng`` only when the option is on."""
        if not self.detected_prob or rng.random() >= self.detected_prob:
            return None
        choices = self.detected.choices(int(row))
        if not len(choices):
            return None
        chip = self.detected.chip(
            int(choices[rng.integers(len(choices))]), int(row), self.input_size
        )
        return np.ascontiguousarray(chip[:, ::-1] if flipped else chip)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """This rank's batch of global step ``step``: float tensors in [0, 255], NCHW."""
        epoch, target, source = self.rows(step)
        lr = np.empty((len(target), self.input_size, self.input_size, 3), np.uint8)
        for i, row in enumerate(target):
            flipped, rng = self._flip(epoch, row)
            detected = self._detected_chip(row, flipped, rng)
            if detected is not None:
                lr[i] = resize_chip(detected, self.input_size, self.upsample)
                continue
            chip = self.hr_chips[row][:, ::-1] if flipped else self.hr_chips[row]
            small = self.degradation(np.ascontiguousarray(chip), rng)
            lr[i] = resize_chip(small, self.input_size, self.upsample)
        out = {
            "lr": _to_tensor(lr),
            "teacher": torch.from_numpy(self.teacher_emb[source]),
            "labels": torch.from_numpy(self.labels[source]),
        }
        if not (self.with_hr or self.teacher_maps):
            return out
        source_flips = [self._flip(epoch, row)[0] for row in source]
        if self.with_hr:
            hr = np.stack(
                [
                    self.hr_chips[row][:, ::-1] if flipped else self.hr_chips[row]
                    for row, flipped in zip(source, source_flips, strict=True)
                ]
            )
            out["hr"] = _to_tensor(hr)
        for stage, maps in self.teacher_maps.items():
            picked = maps[source, np.array(source_flips, np.int64)].astype(np.float32)
            out[f"teacher_map{stage}"] = torch.from_numpy(picked)
        return out

    def loader(self, start: int, stop: int, num_workers: int = 0) -> DataLoader:
        """Batches of steps ``start .. stop - 1`` in order, prepared by ``num_workers`` workers."""
        return DataLoader(
            _Steps(self, start, stop),
            batch_size=None,
            shuffle=False,
            num_workers=num_workers,
            prefetch_factor=4 if num_workers else None,
            generator=torch.Generator(),  # keeps the global RNG untouched (exact resume)
        )


class _Steps(Dataset):
    """Map-style view ``i -> stream.batch(start + i)`` so a DataLoader can prefetch."""

    def __init__(self, stream: TransferStream, start: int, stop: int):
        self.stream, self.start, self.stop = stream, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.stream.batch(self.start + i)


def _to_tensor(chips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float().contiguous()
