"""The trainer: student (+ loss modules) trained on HR-teacher / LR-student batches.

``Trainer`` builds a run from its config: student, losses and ``Objective`` (``objective``),
HR branch and frozen teacher when a loss needs them, EMA (``ema``), optimizer and schedule
(``optim``), DDP wrapper (``distributed``) and the batch stream (``train.data``); ``fit`` runs
the loop (``loop``); ``save``/``load`` move its state through checkpoints (``state``).

Determinism: models are built after ``torch.manual_seed(seed)``; batches are pure functions
of (seed, step) (``train.data``); checkpoints hold every optimizer moment, the scheduler and
each rank's RNG state, so ``resume`` continues bit for bit (on CPU; CUDA kernels may not be
deterministic). Under ``torchrun`` see ``distributed``; only rank 0 writes logs and
checkpoints and evaluates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lrface.data.detected import DetectedFaces
from lrface.losses.methods import adda_modules, loss_parameters, required_fields
from lrface.machine import resolve_precision
from lrface.models.checkpoint import load_student_weights
from lrface.models.encoder import TorchEncoder
from lrface.models.students import create_student
from lrface.train.checkpoint import save_checkpoint
from lrface.train.config import TrainConfig
from lrface.train.data import TransferStream
from lrface.train.distributed import all_gather, init_distributed, wrap_ddp
from lrface.train.ema import make_ema
from lrface.train.evaluation import EvaluateFn
from lrface.train.loop import TrainResult, run_loop
from lrface.train.monitor import LossMonitor
from lrface.train.objective import Objective, build_losses_for, stage_maps
from lrface.train.optim import make_optimizer, make_scheduler
from lrface.train.state import restore_run_state, run_state, student_info


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
        precision, why = resolve_precision(config.precision, str(self.device))
        if self.rank == 0:
            print(f"precision: {precision} ({why})")
        self.objective = Objective(
            self.student, self.losses, self.hr_branch, teacher, gather, precision
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
        if self.config.init_from:
            load_student_weights(student, self.config.student, self.config.init_from)
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

    def fit(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``config.steps`` (or until ``stop_after``, checkpointing there).

        With ``resume`` continue from the run directory's latest checkpoint, if any.
        """
        return run_loop(self, resume, stop_after)


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
