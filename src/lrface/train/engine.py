"""The trainer: student (+ loss modules) trained on HR-teacher / LR-student batches.

``Trainer`` builds a run from its config: student, losses and ``Objective`` (``objective``),
HR branch and frozen teacher when a loss needs them, EMA (``ema``), optimizer and schedule
(``optim``), DDP wrapper (``distributed``) and the batch stream (``train.data``); its ``fit``
runs the loop, its ``save``/``load`` move its whole state through checkpoints (what must match
on resume and the RNG helpers: ``state``; the run's result: ``loop.TrainResult``).

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
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm

from lrface.data.detected import DetectedFaces
from lrface.machine import resolve_precision
from lrface.models.checkpoint import (
    STUDENT_WEIGHTS,
    checkpoints,
    fuse_with_teacher,
    latest_checkpoint,
    load_student_weights,
)
from lrface.models.encoder import TorchEncoder
from lrface.models.students import EnsembleStudent, create_student
from lrface.train.checkpoint import (
    join_state_dict,
    load_training_state,
    save_checkpoint,
    split_state_dict,
)
from lrface.train.config import TrainConfig
from lrface.train.data import TransferStream
from lrface.train.distributed import all_gather, broadcast_flag, init_distributed, wrap_ddp
from lrface.train.ema import ema_tensors, load_ema, make_ema
from lrface.train.evaluation import EvaluateFn, improves
from lrface.train.logs import RunLogs
from lrface.train.loop import TrainResult, due
from lrface.train.monitor import LossMonitor, TrainingDiverged
from lrface.train.objective import Objective, build_losses_for, stage_maps
from lrface.train.optim import make_optimizer, make_scheduler
from lrface.train.state import RESUME_KEYS, rng_state, set_rng_state


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
        needs = self.losses.fields
        maps = stage_maps(self.losses, teacher_maps, len(hr_chips), config.method)
        self.hr_branch = self._new_student(teacher_emb) if "hr_student" in needs else None
        if "teacher_features" in needs and teacher is None:
            from lrface.models.dlib_resnet import load_dlib_resnet

            teacher = load_dlib_resnet()
        if teacher is not None:
            teacher = teacher.to(self.device).eval().requires_grad_(False)
        gather = all_gather if self.world > 1 else None
        precision, why = resolve_precision(config.precision, str(self.device))
        if self.rank == 0:
            print(f"precision: {precision} ({why})")
        self.partner = self._new_partner() if config.fuse_teacher else None
        self.objective = Objective(
            self.student, self.losses, self.hr_branch, teacher, gather, precision, self.partner
        )
        self.objective.to(self.device)
        self.adda = self.losses.adda_modules
        self.ema = make_ema(self.student, config.ema_decay)

        params = [p for p in self.student.parameters() if p.requires_grad]
        if self.hr_branch is not None:
            params += [p for p in self.hr_branch.parameters() if p.requires_grad]
        params += [p for p in self.losses.trainable_parameters() if p.requires_grad]
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
        if self.config.init_from:
            load_student_weights(student, self.config.student, self.config.init_from)
        if getattr(student, "common", None) is not None:
            student.common.set_direction(torch.as_tensor(teacher_emb))
        return student

    def _new_partner(self) -> nn.Module:
        """The frozen teacher the student is fused with (``fuse_teacher``), on the device."""
        pair = fuse_with_teacher(self.student)  # checks input size and dimension
        teacher = pair.members[0]
        return teacher.to(self.device).eval().requires_grad_(False)

    @property
    def deployed(self) -> nn.Module:
        """The weights a checkpoint exports and evaluation sees: the EMA when on."""
        return self.ema.module if self.ema is not None else self.student

    def encoder(self) -> TorchEncoder:
        """The student as it is now, as a FaceEncoder (for evaluation)."""
        network = self.deployed
        if self.partner is not None:
            network = EnsembleStudent([self.partner, network])
        return TorchEncoder(
            network,
            name=self.config.student,
            input_size=self.student.input_size,
            dim=self.student.dim,
            device=self.device,
            key=f"{self.config.student}-training-step{self.step}",
        )

    def save(self, directory: Path) -> None:
        """Checkpoint (collective under DDP: every rank contributes its RNG state)."""
        tensors, info = self._run_state()
        if self.rank == 0:
            save_checkpoint(directory, self.deployed, self._student_info(), tensors, info)

    def fit(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``config.steps`` (or until ``stop_after``, checkpointing there); with
        ``resume`` continue from the run directory's latest checkpoint, if any."""
        config, run_dir = self.config, self.run_dir
        self.monitor = LossMonitor(config.divergence_factor)
        if resume and (latest := latest_checkpoint(run_dir)) is not None:
            self.load(latest)
        elif checkpoints(run_dir):  # every rank checks, so none waits on a failed one
            raise FileExistsError(f"{run_dir} holds checkpoints; pass resume or a new out")
        stop = min(config.steps, stop_after if stop_after is not None else config.steps)
        logs = None
        if self.rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save(run_dir / "config.yaml")
            logs = RunLogs(run_dir, self.step, config.tensorboard)
        bar = tqdm(
            total=config.steps,
            initial=self.step,
            desc=f"train {config.method} {config.student}",
            unit="step",
            disable=not self.progress or self.rank != 0,
            dynamic_ncols=True,
        )
        parts: dict[str, float] = {}
        last_good = latest_checkpoint(run_dir)
        self.student.train()
        tick, faces = time.perf_counter(), 0
        try:
            for batch in self.stream.loader(self.step, stop, config.num_workers):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                parts = self._optimization_step(batch, last_good)
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
                if self.evaluate_fn is not None and due(self.step, config.eval_every, config.steps):
                    self._evaluate(logs)
                if due(self.step, config.checkpoint_every, stop):
                    self._checkpoint()
                    last_good = latest_checkpoint(run_dir)
        finally:
            bar.close()
            if logs is not None:
                logs.close()
        return TrainResult(
            run_dir, self.step, self.metrics, self.best_metric, self.best_step, parts
        )

    def _optimization_step(
        self, batch: dict[str, torch.Tensor], last_good: Path | None
    ) -> dict[str, float]:
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

    def _evaluate(self, logs: RunLogs | None) -> None:
        """Evaluate on rank 0; every rank then joins in saving ``best`` if it improved."""
        improved = False
        if self.rank == 0:
            metrics = self.evaluate_fn(self.encoder())
            self.metrics = {k: float(v) for k, v in metrics.items()}
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
        """A periodic checkpoint; only the newest ``keep_checkpoints`` are kept."""
        self.save(self.run_dir / "checkpoints" / f"step-{self.step:07d}")
        if self.rank == 0:
            for old in checkpoints(self.run_dir)[: -self.config.keep_checkpoints]:
                shutil.rmtree(old)

    def _student_info(self) -> dict:
        """``student.json``: what rebuilds the student, and where in the run it was saved."""
        return {
            "name": self.config.student,
            "kwargs": self.config.student_kwargs,
            "input_size": self.student.input_size,
            "dim": self.student.dim,
            "step": self.step,
            "method": self.config.method,
            "metrics": self.metrics,
            **({"trained_fused": True} if self.config.fuse_teacher else {}),
        }

    def _run_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Every tensor and every scalar of the run state except the student's weights
        (collective under DDP: every rank contributes its RNG state)."""
        tensors = {f"losses.{k}": v for k, v in self.losses.state_dict().items()}
        if self.hr_branch is not None:
            tensors.update({f"hr_branch.{k}": v for k, v in self.hr_branch.state_dict().items()})
        optim, optim_meta = split_state_dict("optim.student", self.optimizer.state_dict())
        tensors.update(optim)
        adda_meta = []
        for i, adda in enumerate(self.adda):
            part, meta = split_state_dict(f"optim.adda{i}", adda.optimizer.state_dict())
            tensors.update(part)
            adda_meta.append(meta)
        rng = rng_state(self.device)
        if self.world > 1:
            rng = all_gather(rng.to(self.device)).cpu().view(self.world, -1)
        else:
            rng = rng.view(1, -1)
        tensors["rng"] = rng
        if self.ema is not None:  # the average is the exported student; keep the raw weights
            tensors.update(ema_tensors(self.ema, self.student))
        info = {
            "step": self.step,
            "world_size": self.world,
            "config": self.config.to_dict(),
            "optimizer": optim_meta,
            "adda_optimizers": adda_meta,
            "scheduler": self.scheduler.state_dict(),
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "metrics": self.metrics,
            "monitor": list(self.monitor.history),
        }
        return tensors, info

    def load(self, directory: Path) -> None:
        """Restore a checkpoint written by ``save`` (same run fields, same world size)."""
        tensors, info = load_training_state(directory)
        saved = info["config"]
        changed = [k for k in RESUME_KEYS if saved.get(k) != self.config.to_dict()[k]]
        if changed:
            raise ValueError(f"{directory}: cannot resume with a different {', '.join(changed)}")
        if info["world_size"] != self.world:
            raise ValueError(
                f"{directory}: saved by {info['world_size']} processes, resuming with {self.world}"
            )

        def group(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        exported = load_file(str(directory / STUDENT_WEIGHTS))
        if self.ema is not None:
            load_ema(self.ema, self.student, exported, tensors)
        else:
            self.student.load_state_dict(exported)

        self.losses.load_state_dict(group("losses."))
        if self.hr_branch is not None:
            self.hr_branch.load_state_dict(group("hr_branch."))
        self.optimizer.load_state_dict(join_state_dict("optim.student", tensors, info["optimizer"]))
        for i, adda in enumerate(self.adda):
            meta = info["adda_optimizers"][i]
            adda.optimizer.load_state_dict(join_state_dict(f"optim.adda{i}", tensors, meta))
        self.scheduler.load_state_dict(info["scheduler"])
        set_rng_state(tensors["rng"][self.rank], self.device)
        self.step = info["step"]
        self.best_metric, self.best_step = info["best_metric"], info["best_step"]
        self.metrics = info["metrics"]
        self.monitor.history.extend(info["monitor"])
        self.objective.to(self.device)


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
