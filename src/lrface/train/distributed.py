"""Distributed set-up under ``torchrun``: process group, DDP wrapper, collectives.

``WORLD_SIZE`` > 1 in the environment makes a run distributed: the process group comes from
the environment (gloo on CPU, nccl on CUDA), each rank takes its slice of every global batch,
and the student, HR branch and trainable loss modules are wrapped in one
``DistributedDataParallel``. ADDA discriminators (owned by their own optimizer) stay outside
DDP and step on embeddings all-gathered from every rank, so they stay identical everywhere.
Outside torchrun every function here is a no-op or a plain call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")
# How long ranks wait for each other; covers rank 0 aligning and detecting LFW on a cold cache.
DATA_PREP_TIMEOUT = timedelta(hours=3)


def init_distributed(device: str) -> tuple[int, int, str]:
    """``(rank, world_size, device)``; initializes the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        # long timeout: rank_zero_first holds the other ranks while rank 0 fills cold caches
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=DATA_PREP_TIMEOUT)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return dist.get_rank(), dist.get_world_size(), device


def rank_zero_first(prepare: Callable[[], T], device: str = "cpu") -> T:
    """``prepare()`` on rank 0, then on the other ranks, which find its caches filled.

    Data preparation (alignment, teacher embeddings, the detection bank) caches its results;
    under torchrun every rank would otherwise compute them at once on a cold cache. Outside
    torchrun it simply calls ``prepare``.
    """
    rank, world, _ = init_distributed(device)
    if world > 1 and rank != 0:
        dist.barrier()
    result = prepare()
    if world > 1 and rank == 0:
        dist.barrier()
    return result


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor``, concatenated in rank order along the first dimension."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def broadcast_flag(flag: bool, device: str) -> bool:
    """Rank 0's ``flag`` on every rank."""
    tensor = torch.tensor([int(flag)], device=device)
    dist.broadcast(tensor, 0)
    return bool(tensor.item())


def wrap_ddp(objective: nn.Module, outside: Iterable[nn.Module], device: str) -> nn.Module:
    """``objective`` in ``DistributedDataParallel``, leaving the parameters of ``outside``
    (modules with their own optimizer, the ADDA discriminators) unsynchronized."""
    from torch.nn.parallel import DistributedDataParallel

    outside_ids = {id(p) for module in outside for p in module.parameters()}
    ignored = [n for n, p in objective.named_parameters() if id(p) in outside_ids]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(objective, ignored)
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(objective, device_ids=ids)
