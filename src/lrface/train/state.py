"""A trainer's full state in a checkpoint, and back: what makes ``resume`` bit for bit.

Besides the exported student (``models.checkpoint``), a checkpoint holds the loss modules
(discriminators, margins), the HR branch, every optimizer moment, the scheduler, the
divergence monitor's history, the EMA's raw weights and each rank's RNG state
(``train.checkpoint`` stores them as safetensors + JSON). A resume must keep the fields that
define the run (``RESUME_KEYS``) and the world size.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

from lrface.models.checkpoint import STUDENT_WEIGHTS
from lrface.train.checkpoint import join_state_dict, load_training_state, split_state_dict
from lrface.train.distributed import all_gather
from lrface.train.ema import ema_tensors, load_ema

if TYPE_CHECKING:
    from lrface.train.engine import Trainer

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


def student_info(trainer: Trainer) -> dict:
    """``student.json``: what rebuilds the student, and where in the run it was saved."""
    return {
        "name": trainer.config.student,
        "kwargs": trainer.config.student_kwargs,
        "input_size": trainer.student.input_size,
        "dim": trainer.student.dim,
        "step": trainer.step,
        "method": trainer.config.method,
        "metrics": trainer.metrics,
    }


def run_state(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict]:
    """Every tensor and every scalar of the run state except the student's weights
    (collective under DDP: every rank contributes its RNG state)."""
    tensors = {f"losses.{k}": v for k, v in trainer.losses.state_dict().items()}
    if trainer.hr_branch is not None:
        tensors.update({f"hr_branch.{k}": v for k, v in trainer.hr_branch.state_dict().items()})
    optim, optim_meta = split_state_dict("optim.student", trainer.optimizer.state_dict())
    tensors.update(optim)
    adda_meta = []
    for i, adda in enumerate(trainer.adda):
        part, meta = split_state_dict(f"optim.adda{i}", adda.optimizer.state_dict())
        tensors.update(part)
        adda_meta.append(meta)
    rng = rng_state(trainer.device)
    if trainer.world > 1:
        rng = all_gather(rng.to(trainer.device)).cpu().view(trainer.world, -1)
    else:
        rng = rng.view(1, -1)
    tensors["rng"] = rng
    if trainer.ema is not None:  # the average is the exported student; keep the raw weights
        tensors.update(ema_tensors(trainer.ema, trainer.student))
    info = {
        "step": trainer.step,
        "world_size": trainer.world,
        "config": trainer.config.to_dict(),
        "optimizer": optim_meta,
        "adda_optimizers": adda_meta,
        "scheduler": trainer.scheduler.state_dict(),
        "best_metric": trainer.best_metric,
        "best_step": trainer.best_step,
        "metrics": trainer.metrics,
        "monitor": list(trainer.monitor.history),
    }
    return tensors, info


def restore_run_state(trainer: Trainer, directory: Path) -> None:
    """Restore a checkpoint written from ``run_state`` (same run fields, same world size)."""
    tensors, info = load_training_state(directory)
    saved = info["config"]
    changed = [k for k in RESUME_KEYS if saved.get(k) != trainer.config.to_dict()[k]]
    if changed:
        raise ValueError(f"{directory}: cannot resume with a different {', '.join(changed)}")
    if info["world_size"] != trainer.world:
        raise ValueError(
            f"{directory}: saved by {info['world_size']} processes, resuming with {trainer.world}"
        )

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    exported = load_file(str(directory / STUDENT_WEIGHTS))
    if trainer.ema is not None:
        load_ema(trainer.ema, trainer.student, exported, tensors)
    else:
        trainer.student.load_state_dict(exported)

    trainer.losses.load_state_dict(group("losses."))
    if trainer.hr_branch is not None:
        trainer.hr_branch.load_state_dict(group("hr_branch."))
    trainer.optimizer.load_state_dict(join_state_dict("optim.student", tensors, info["optimizer"]))
    for i, adda in enumerate(trainer.adda):
        meta = info["adda_optimizers"][i]
        adda.optimizer.load_state_dict(join_state_dict(f"optim.adda{i}", tensors, meta))
    trainer.scheduler.load_state_dict(info["scheduler"])
    set_rng_state(tensors["rng"][trainer.rank], trainer.device)
    trainer.step = info["step"]
    trainer.best_metric, trainer.best_step = info["best_metric"], info["best_step"]
    trainer.metrics = info["metrics"]
    trainer.monitor.history.extend(info["monitor"])
    trainer.objective.to(trainer.device)
