"""A trainer's full state in a checkpoint, and back: what makes ``resume`` bit for bit.

Besides the exported student (``models.checkpoint``), a checkpoint holds the loss modules
(discriminators, margins), the HR branch, every optimizer moment, the scheduler, the
divergence monitor's history, the EMA's raw weights and each rank's RNG state
(``train.checkpoint`` stores them as safetensors + JSON). A resume must keep the fields that
define the run (``RESUME_KEYS``) and the world size.
"""

from __future__ import annotations

import torch

# Fields that must match for a resume to continue the same run.
RESUME_KEYS = (
    "method",
    "method_kwargs",
    "student",
    "student_kwargs",
    "seed",
    "batch_size",
    "pairing",
    "hr_flip",
    "optimizer",
    "ema_decay",
)


def rng_state(device: str) -> torch.Tensor:
    """This rank's RNG states as one uint8 tensor (CPU, then CUDA when in use)."""
    states = [torch.get_rng_state()]
    if device.startswith("cuda"):
        states.append(torch.cuda.get_rng_state(device))
    return torch.cat(states)


def set_rng_state(state: torch.Tensor, device: str) -> None:
    """Inverse of ``rng_state``."""
    cpu = torch.get_rng_state()
    torch.set_rng_state(state[: len(cpu)].clone())
    if device.startswith("cuda"):
        torch.cuda.set_rng_state(state[len(cpu) :].clone(), device)
