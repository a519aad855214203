"""The training loop of a built ``Trainer``: steps, logs, evaluation and checkpoints.

One step: the objective's total loss is checked (``monitor``: NaN, inf or an explosion stops
the run and names the last good checkpoint), back-propagated, clipped and applied; the EMA
follows and the LR schedule advances. Logs come every ``log_every`` steps, evaluation every
``eval_every`` and checkpoints every ``checkpoint_every`` steps, each also at the last step.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from tqdm import tqdm

from lrface.models.checkpoint import checkpoints, latest_checkpoint
from lrface.train.distributed import broadcast_flag
from lrface.train.evaluation import improves
from lrface.train.logs import RunLogs
from lrface.train.monitor import LossMonitor, TrainingDiverged

if TYPE_CHECKING:
    from lrface.train.engine import Trainer


@dataclass
class TrainResult:
    """Where a run ended: its directory, step, last and best evaluation."""

    run_dir: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    last_parts: dict[str, float] = field(default_factory=dict)


def due(step: int, every: int, last: int) -> bool:
    """Periodic events: every ``every`` steps (0 = never) and at the ``last`` step."""
    return step == last or (every > 0 and step % every == 0)


def optimization_step(
    trainer: Trainer, batch: dict[str, torch.Tensor], last_good: Path | None
) -> dict[str, float]:
    """One optimization step on ``batch``; returns the loss parts."""
    config = trainer.config
    total, parts = trainer.model(
        batch["lr"],
        batch["teacher"],
        batch["labels"],
        batch.get("hr"),
        trainer.step / config.steps,
        {s: batch[f"teacher_map{s}"] for s in trainer.stream.teacher_maps},
    )
    value = total.detach().clone()
    if trainer.world > 1:
        dist.all_reduce(value)
        value /= trainer.world
    problem = trainer.monitor.problem(value.item())
    if problem is not None:
        where = f"last good checkpoint: {last_good}" if last_good else "no checkpoint"
        raise TrainingDiverged(
            f"stopped at step {trainer.step}: {problem} (parts {parts}); {where}"
        )
    trainer.optimizer.zero_grad(set_to_none=True)
    total.backward()
    if config.grad_clip:
        torch.nn.utils.clip_grad_norm_(trainer.params, config.grad_clip)
    trainer.optimizer.step()
    if trainer.ema is not None:
        trainer.ema.update_parameters(trainer.student)
    trainer.scheduler.step()
    trainer.step += 1
    return parts


def evaluate(trainer: Trainer, logs: RunLogs | None) -> None:
    """Evaluate on rank 0; every rank then joins in saving ``best`` if it improved."""
    improved = False
    if trainer.rank == 0:
        metrics = trainer.evaluate_fn(trainer.encoder())
        trainer.metrics = {k: float(v) for k, v in metrics.items()}
        trainer.student.train()
        logs.row("eval.csv", trainer.step, trainer.metrics)
        improved = improves(trainer.metrics, trainer.config.select_metric, trainer.best_metric)
        if improved:
            trainer.best_metric = trainer.metrics[trainer.config.select_metric]
            trainer.best_step = trainer.step
    if trainer.world > 1:
        improved = broadcast_flag(improved, trainer.device)
    if improved:
        trainer.save(trainer.run_dir / "best")


def checkpoint(trainer: Trainer) -> None:
    """A periodic checkpoint; only the newest ``keep_checkpoints`` are kept."""
    trainer.save(trainer.run_dir / "checkpoints" / f"step-{trainer.step:07d}")
    if trainer.rank == 0:
        for old in checkpoints(trainer.run_dir)[: -trainer.config.keep_checkpoints]:
            shutil.rmtree(old)


def run_loop(trainer: Trainer, resume: bool, stop_after: int | None) -> TrainResult:
    """Train to ``config.steps`` (or until ``stop_after``, checkpointing there); with
    ``resume`` continue from the run directory's latest checkpoint, if any."""
    config, run_dir = trainer.config, trainer.run_dir
    trainer.monitor = LossMonitor(config.divergence_factor)
    if resume and (latest := latest_checkpoint(run_dir)) is not None:
        trainer.load(latest)
    elif checkpoints(run_dir):  # every rank checks, so none waits on a failed one
        raise FileExistsError(f"{run_dir} holds checkpoints; pass resume or a new out")
    stop = min(config.steps, stop_after if stop_after is not None else config.steps)
    logs = None
    if trainer.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / "config.yaml")
        logs = RunLogs(run_dir, trainer.step, config.tensorboard)
    bar = tqdm(
        total=config.steps,
        initial=trainer.step,
        desc=f"train {config.method} {config.student}",
        unit="step",
        disable=not trainer.progress or trainer.rank != 0,
        dynamic_ncols=True,
    )
    parts: dict[str, float] = {}
    last_good = latest_checkpoint(run_dir)
    trainer.student.train()
    tick, faces = time.perf_counter(), 0
    try:
        for batch in trainer.stream.loader(trainer.step, stop, config.num_workers):
            batch = {k: v.to(trainer.device, non_blocking=True) for k, v in batch.items()}
            parts = optimization_step(trainer, batch, last_good)
            faces += len(batch["lr"]) * trainer.world
            if trainer.rank == 0:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in parts.items()}, refresh=False)
                if trainer.step % config.log_every == 0 or trainer.step == stop:
                    elapsed = time.perf_counter() - tick
                    row = {
                        "epoch": trainer.step / trainer.stream.steps_per_epoch,
                        "lr": trainer.scheduler.get_last_lr()[0],
                        **parts,
                        "faces_per_s": faces / max(elapsed, 1e-9),
                    }
                    logs.row("log.csv", trainer.step, row)
                    tick, faces = time.perf_counter(), 0
            if trainer.evaluate_fn is not None and due(
                trainer.step, config.eval_every, config.steps
            ):
                evaluate(trainer, logs)
            if due(trainer.step, config.checkpoint_every, stop):
                checkpoint(trainer)
                last_good = latest_checkpoint(run_dir)
    finally:
        bar.close()
        if logs is not None:
            logs.close()
    return TrainResult(
        run_dir, trainer.step, trainer.metrics, trainer.best_metric, trainer.best_step, parts
    )
