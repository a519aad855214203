"""The training loop: student (+ loss modules) trained on HR-teacher / LR-student batches.

One step: the batch's LR faces go through the student; ADDA discriminators (if any) take
their own step on the detached embeddings; the weighted losses are summed (``objective``),
checked (NaN, inf, or more than ``divergence_factor`` x the running median stops the run,
keeping the last good checkpoint; ``monitor``), back-propagated, clipped and applied; the LR
schedule advances (``optim``) and the EMA (``ema``) follows. Evaluation (``evaluation``),
checkpoints (``state``) and logs (``logs``) come at their configured steps.

Determinism: models are built after ``torch.manual_seed(seed)``; batches are pure functions
of (seed, step) (``train.data``); checkpoints hold every optimizer moment, the scheduler and
each rank's RNG state, so ``resume`` continues bit for bit (on CPU; CUDA kernels may not be
deterministic). Under ``torchrun`` see ``distributed``; only rank 0 writes logs and
checkpoints and evaluates.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from lrface.data.detected import DetectedFaces
from lrface.losses.registry import adda_modules, loss_parameters, required_fields
from lrface.models.checkpoint import checkpoints, latest_checkpoint
from lrface.models.encoder import TorchEncoder
from lrface.models.students import create_student
from lrface.train.checkpoint import save_checkpoint
from lrface.train.config import TrainConfig
from lrface.train.data import TransferStream
from lrface.train.distributed import all_gather, broadcast_flag, init_distributed, wrap_ddp
from lrface.train.ema import make_ema
from lrface.train.evaluation import EvaluateFn, improves
from lrface.train.logs import RunLogs
from lrface.train.monitor import LossMonitor, TrainingDiverged
from lrface.train.objective import Objective, build_losses_for, stage_maps
from lrface.train.optim import make_optimizer, make_scheduler
from lrface.train.state import restore_run_state, run_state, student_info


@dataclass
class TrainResult:
    """Where a run ended: its directory, step, last and best evaluation."""

    run_dir: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    last_parts: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Builds everything a run needs from a config and the in-memory training arrays.

    hr_chips ``M x 150 x 150 x 3`` uint8, teacher_emb ``M x D`` (the teacher's embeddings of
    those chips; flip-averaged when ``config.hr_flip``), labels ``M`` identity ids.
    teacher: the frozen teacher module, needed only by losses that read teacher features;
        loaded from dlib's weights when such a loss is configured and none is given.
    teacher_maps: ``stages -> [M x 2 x C x g x g per stage]``, the teacher's maps of the
        chips and their mirror images (``train.teacher_maps``); called only when a loss reads
        them (hint losses), with the stages it reads.
    evaluate_fn: ``encoder -> {metric: value}``, called every ``eval_every`` steps on rank 0.
    """

    def __init__(
        self,
        config: TrainConfig,
        hr_chips: np.ndarray,
        teacher_emb: np.ndarray,
        labels: np.ndarray,
        evaluate_fn: EvaluateFn | None = None,
        teacher: nn.Module | None = None,
        progress: bool = True,
        teacher_maps: Callable[[tuple[int, ...]], list[np.ndarray]] | None = None,
        detected: DetectedFaces | None = None,
    ):
        self.config = config
        self.rank, self.world, self.device = init_distributed(config.device)
        self.run_dir = Path(config.out)
        self.evaluate_fn = evaluate_fn
        self.progress = progress

        torch.manual_seed(config.seed)
        self.student = self._new_student(teacher_emb)
        self.losses = build_losses_for(config, self.student, teacher_emb, labels)
        needs = required_fields(self.losses)
        maps = stage_maps(self.losses, teacher_maps, len(hr_chips), config.method)
        self.hr_branch = self._new_student(teacher_emb) if "hr_student" in needs else None
        if "teacher_features" in needs and teacher is None:
            from lrface.models.dlib_resnet import load_dlib_resnet

            teacher = load_dlib_resnet()
        if teacher is not None:
            teacher = teacher.to(self.device).eval().requires_grad_(False)
        gather = all_gather if self.world > 1 else None
        self.objective = Objective(
            self.student, self.losses, self.hr_branch, teacher, gather, config.precision
        )
        self.objective.to(self.device)
        self.adda = adda_modules(self.losses)
        self.ema = make_ema(self.student, config.ema_decay)

        params = [p for p in self.student.parameters() if p.requires_grad]
        if self.hr_branch is not None:
            params += [p for p in self.hr_branch.parameters() if p.requires_grad]
        params += [p for p in loss_parameters(self.losses) if p.requires_grad]
        self.params = params
        self.optimizer = make_optimizer(config, params)
        self.scheduler = make_scheduler(config, self.optimizer)
        self.model: nn.Module = self.objective
        if self.world > 1:
            self.model = wrap_ddp(self.objective, self.adda, self.device)
        torch.manual_seed(config.seed * 1009 + self.rank + 1)

        self.stream = TransferStream(
            hr_chips,
            teacher_emb,
            labels,
            config.degradation,
            input_size=self.student.input_size,
            batch_size=config.batch_size,
            seed=config.seed,
            pairing=config.pairing,
            flip=config.hr_flip,
            with_hr=bool({"teacher_features", "hr_student"} & needs),
            teacher_maps=maps,
            rank=self.rank,
            world_size=self.world,
            detected=detected,
            detected_prob=config.detected_prob,
        )
        self.step = 0
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.metrics: dict[str, float] = {}
        self.monitor = LossMonitor(config.divergence_factor)

    def _new_student(self, teacher_emb: np.ndarray) -> nn.Module:
        """The configured student; a pinned common component takes the teacher's direction."""
        student = create_student(self.config.student, **self.config.student_kwargs)
        if getattr(student, "common", None) is not None:
            student.common.set_direction(torch.as_tensor(teacher_emb))
        return student

    @property
    def deployed(self) -> nn.Module:
        """The weights a checkpoint exports and evaluation sees: the EMA when on."""
        return self.ema.module if self.ema is not None else self.student

    def encoder(self) -> TorchEncoder:
        """The student as it is now, as a FaceEncoder (for evaluation)."""
        return TorchEncoder(
            self.deployed,
            name=self.config.student,
            input_size=self.student.input_size,
            dim=self.student.dim,
            device=self.device,
            key=f"{self.config.student}-training-step{self.step}",
        )

    def save(self, directory: Path) -> None:
        """Checkpoint (collective under DDP: every rank contributes its RNG state)."""
        tensors, info = run_state(self)
        if self.rank == 0:
            save_checkpoint(directory, self.deployed, student_info(self), tensors, info)

    def load(self, directory: Path) -> None:
        """Restore a checkpoint written by ``save`` (same world size)."""
        restore_run_state(self, directory)

    def _evaluate(self, logs: RunLogs | None) -> None:
        """Evaluate on rank 0; every rank then joins in saving ``best`` if it improved."""
        improved = False
        if self.rank == 0:
            self.metrics = {k: float(v) for k, v in self.evaluate_fn(self.encoder()).items()}
            self.student.train()
            logs.row("eval.csv", self.step, self.metrics)
            improved = improves(self.metrics, self.config.select_metric, self.best_metric)
            if improved:
                self.best_metric = self.metrics[self.config.select_metric]
                self.best_step = self.step
        if self.world > 1:
            improved = broadcast_flag(improved, self.device)
        if improved:
            self.save(self.run_dir / "best")

    def _checkpoint(self) -> None:
        self.save(self.run_dir / "checkpoints" / f"step-{self.step:07d}")
        if self.rank == 0:
            for old in checkpoints(self.run_dir)[: -self.config.keep_checkpoints]:
                shutil.rmtree(old)

    def _step(self, batch: dict[str, torch.Tensor], last_good: Path | None) -> dict[str, float]:
        """One optimization step on ``batch``; returns the loss parts."""
        config = self.config
        total, parts = self.model(
            batch["lr"],
            batch["teacher"],
            batch["labels"],
            batch.get("hr"),
            self.step / config.steps,
            {s: batch[f"teacher_map{s}"] for s in self.stream.teacher_maps},
        )
        value = total.detach().clone()
        if self.world > 1:
            dist.all_reduce(value)
            value /= self.world
        problem = self.monitor.problem(value.item())
        if problem is not None:
            where = f"last good checkpoint: {last_good}" if last_good else "no checkpoint"
            raise TrainingDiverged(
                f"stopped at step {self.step}: {problem} (parts {parts}); {where}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.student)
        self.scheduler.step()
        self.step += 1
        return parts

    def fit(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``config.steps`` (or until ``stop_after``, checkpointing there).

        With ``resume`` continue from the run directory's latest checkpoint, if any.
        """
        config = self.config
        self.monitor = LossMonitor(config.divergence_factor)
        if resume and (latest := latest_checkpoint(self.run_dir)) is not None:
            self.load(latest)
        elif checkpoints(self.run_dir):  # every rank checks, so none waits on a failed one
            raise FileExistsError(f"{self.run_dir} holds checkpoints; pass resume or a new out")
        stop = min(config.steps, stop_after if stop_after is not None else config.steps)
        logs = None
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / "config.yaml")
            logs = RunLogs(self.run_dir, self.step, config.tensorboard)
        bar = tqdm(
            total=config.steps,
            initial=self.step,
            desc=f"train {config.method} {config.student}",
            unit="step",
            disable=not self.progress or self.rank != 0,
            dynamic_ncols=True,
        )
        parts: dict[str, float] = {}
        last_good = latest_checkpoint(self.run_dir)
        self.student.train()
        tick, faces = time.perf_counter(), 0
        try:
            for batch in self.stream.loader(self.step, stop, config.num_workers):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                parts = self._step(batch, last_good)
                faces += len(batch["lr"]) * self.world
                if self.rank == 0:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in parts.items()}, refresh=False)
                    if self.step % config.log_every == 0 or self.step == stop:
                        elapsed = time.perf_counter() - tick
                        row = {
                            "epoch": self.step / self.stream.steps_per_epoch,
                            "lr": self.scheduler.get_last_lr()[0],
                            **parts,
                            "faces_per_s": faces / max(elapsed, 1e-9),
                        }
                        logs.row("log.csv", self.step, row)
                        tick, faces = time.perf_counter(), 0
                if self.evaluate_fn is not None and _due(
                    self.step, config.eval_every, config.steps
                ):
                    self._evaluate(logs)
                if _due(self.step, config.checkpoint_every, stop):
                    self._checkpoint()
                    last_good = latest_checkpoint(self.run_dir)
        finally:
            bar.close()
            if logs is not None:
                logs.close()
        return TrainResult(
            self.run_dir, self.step, self.metrics, self.best_metric, self.best_step, parts
        )


def _due(step: int, every: int, last: int) -> bool:
    """Periodic events: every ``every`` steps (0 = never) and at the ``last`` step."""
    return step == last or (every > 0 and step % every == 0)


def train(
    config: TrainConfig,
    hr_chips: np.ndarray,
    teacher_emb: np.ndarray,
    labels: np.ndarray,
    evaluate_fn: EvaluateFn | None = None,
    teacher: nn.Module | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    teacher_maps: Callable[[tuple[int, ...]], list[np.ndarray]] | None = None,
    detected: DetectedFaces | None = None,
) -> TrainResult:
    """Build a ``Trainer`` and run it (see ``Trainer`` and ``Trainer.fit``)."""
    trainer = Trainer(
        config,
        hr_chips,
        teacher_emb,
        labels,
        evaluate_fn,
        teacher,
        progress,
        teacher_maps,
        detected,
    )
    return trainer.fit(resume=resume, stop_after=stop_after)
