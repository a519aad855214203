"""The training loop: student (+ loss modules) trained on HR-teacher / LR-student batches.

One step: the batch's LR faces go through the student; ADDA discriminators (if any) take
their own step on the detached embeddings; the weighted losses are summed, checked (NaN, inf,
or more than ``divergence_factor`` x the running median stops the run, keeping the last good
checkpoint), back-propagated, clipped and applied; the LR schedule advances.

Determinism: models are built after ``torch.manual_seed(seed)``; batches are pure functions
of (seed, step) (``train.data``); checkpoints hold every optimizer moment, the scheduler and
each rank's RNG state, so ``resume`` continues bit for bit (on CPU; CUDA kernels may not be
deterministic).

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group comes from the
environment (gloo on CPU, nccl on CUDA); the student, HR branch and trainable loss modules
are wrapped in one ``DistributedDataParallel``; each rank takes its slice of every global
batch; ADDA discriminators (owned by their own optimizer, outside DDP) step on embeddings
all-gathered from every rank, so they stay identical everywhere. Only rank 0 writes logs and
checkpoints and evaluates.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from lrface.data.detected import DetectedFaces
from lrface.losses.base import TransferOutputs
from lrface.losses.prototype import teacher_prototypes
from lrface.losses.registry import (
    adda_modules,
    build_losses,
    discriminator_steps,
    loss_parameters,
    map_stages,
    parse_method,
    required_fields,
    total_loss,
)
from lrface.models.checkpoint import checkpoints, latest_checkpoint
from lrface.models.encoder import FaceEncoder, TorchEncoder
from lrface.models.students import create_student, resize_input
from lrface.train.checkpoint import (
    join_state_dict,
    load_training_state,
    save_checkpoint,
    split_state_dict,
)
from lrface.train.config import TrainConfig
from lrface.train.data import TransferStream

EvaluateFn = Callable[[FaceEncoder], dict[str, float]]
T = TypeVar("T")
# How long ranks wait for each other; covers rank 0 aligning and detecting LFW on a cold cache.
DATA_PREP_TIMEOUT = timedelta(hours=3)

# Fields that must match for a resume to continue the same run.
_RESUME_KEYS = (
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


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or exploded; the message names the last good checkpoint."""


@dataclass
class TrainResult:
    """Where a run ended: its directory, step, last and best evaluation."""

    run_dir: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    last_parts: dict[str, float] = field(default_factory=dict)


def lr_factor(config: TrainConfig, step: int) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then the schedule."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "cosine":
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine
    if config.schedule == "step":
        return config.gamma ** sum(step >= m for m in config.milestones)
    return 1.0


class Objective(nn.Module):
    """Student, optional HR branch and the losses: ``forward(batch) -> (total, parts)``.

    One module so that a single DDP wrapper synchronizes every trainable parameter. The frozen
    teacher is kept outside the module tree (no grads, not checkpointed, not broadcast).
    """

    def __init__(
        self,
        student: nn.Module,
        losses: nn.ModuleDict,
        hr_branch: nn.Module | None = None,
        teacher: nn.Module | None = None,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
        precision: str = "fp32",
    ):
        super().__init__()
        self.student = student
        self.precision = precision
        self.losses = losses
        self.hr_branch = hr_branch
        self.needs = required_fields(losses)
        self._teacher = (teacher,)  # tuple: hidden from parameters() / state_dict()
        self._gather = gather

    def forward(
        self,
        lr: torch.Tensor,
        teacher_emb: torch.Tensor,
        labels: torch.Tensor,
        hr: torch.Tensor | None,
        progress: float,
        teacher_maps: dict[int, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        features = bool({"student_features", "teacher_features"} & self.needs)
        student_features: list[torch.Tensor] = []
        autocast = torch.autocast(lr.device.type, torch.bfloat16, enabled=self.precision == "bf16")
        with autocast:
            if features:
                embedding, student_features = self.student(lr, return_features=True)
            else:
                embedding = self.student(lr)
        embedding = embedding.float()
        student_features = [f.float() for f in student_features]
        teacher_features: list[torch.Tensor] = []
        if "teacher_features" in self.needs:
            with torch.no_grad(), autocast:
                _, teacher_features = self._teacher[0](hr, return_features=True)
            teacher_features = [f.float() for f in teacher_features]
        hr_student = None
        if "hr_student" in self.needs:
            hr_student = self.hr_branch(resize_input(hr, self.hr_branch.input_size))
        outputs = TransferOutputs(
            student=embedding,
            teacher=teacher_emb,
            student_features=student_features,
            teacher_features=teacher_features,
            teacher_maps=teacher_maps or {},
            labels=labels,
            hr_student=hr_student,
            progress=progress,
        )
        disc: dict[str, float] = {}
        if adda_modules(self.losses):
            seen = outputs
            if self._gather is not None:
                seen = TransferOutputs(
                    self._gather(embedding.detach()), self._gather(teacher_emb.detach())
                )
            disc = discriminator_steps(self.losses, seen)
        total, parts = total_loss(self.losses, outputs)
        return total, {**parts, **disc}


def _init_distributed(device: str) -> tuple[int, int, str]:
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
    rank, world, _ = _init_distributed(device)
    if world > 1 and rank != 0:
        dist.barrier()
    result = prepare()
    if world > 1 and rank == 0:
        dist.barrier()
    return result


def _all_gather(tensor: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def _param_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices/kernels only (not on norms, biases, PReLU slopes)."""
    decay = [p for p in params if p.ndim > 1]
    plain = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def _make_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    groups = _param_groups(params, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.adam_betas))


class _Monitor:
    """Flags a loss that is not finite or exceeds ``factor`` x the running median."""

    def __init__(self, factor: float, window: int = 200, warmup: int = 20):
        self.factor, self.warmup = factor, warmup
        self.history: deque[float] = deque(maxlen=window)

    def problem(self, value: float) -> str | None:
        if not math.isfinite(value):
            return f"loss is {value}"
        if len(self.history) >= self.warmup:
            median = statistics.median(self.history)
            if median > 0 and value > self.factor * median:
                return f"loss {value:.4g} exceeds {self.factor:g} x its running median {median:.4g}"
        self.history.append(value)
        return None


class _Logs:
    """CSV rows and TensorBoard scalars in the run directory (rank 0 only)."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool):
        self.run_dir = run_dir
        for name in ("log.csv", "eval.csv"):
            _truncate_csv(run_dir / name, start_step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)

    def row(self, name: str, step: int, values: dict[str, float]) -> None:
        path = self.run_dir / name
        new = not path.exists()
        fields = ["step", *values]
        if not new:
            with open(path, newline="") as handle:
                fields = next(csv.reader(handle))
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({"step": step, **values})
        if self.writer is not None:
            prefix = "eval" if name == "eval.csv" else "train"
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _truncate_csv(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (a resumed run logs them again)."""
    if not path.exists():
        return
    if step == 0:
        path.unlink()
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= step]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)


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
        self.rank, self.world, self.device = _init_distributed(config.device)
        self.run_dir = Path(config.out)
        self.evaluate_fn = evaluate_fn
        self.progress = progress

        torch.manual_seed(config.seed)
        self.student = self._new_student(teacher_emb)
        spec = parse_method(config.method)
        for name, kwargs in config.method_kwargs.items():
            spec.setdefault(name, {}).update(kwargs)
        shared: dict = {"num_classes": int(np.max(labels)) + 1, "dim": self.student.dim}
        if getattr(self.student, "supports_features", False):
            shared["student_channels"] = self.student.feature_channels
        if "prototype" in spec:
            shared["prototypes"] = teacher_prototypes(
                torch.as_tensor(teacher_emb, dtype=torch.float32),
                torch.as_tensor(labels, dtype=torch.long),
            )
        self.losses = build_losses(spec, **shared)
        needs = required_fields(self.losses)
        if "student_features" in needs and not self.student.supports_features:
            raise ValueError(
                f"method {config.method!r} matches stage features, which student "
                f"{config.student!r} does not have"
            )
        maps: dict[int, np.ndarray] = {}
        if "teacher_maps" in needs:
            if teacher_maps is None:
                raise ValueError(f"method {config.method!r} needs the teacher's stage maps")
            stages = map_stages(self.losses)
            maps = dict(zip(stages, teacher_maps(stages), strict=True))
            for stage, array in maps.items():
                if len(array) != len(hr_chips) or array.ndim != 5 or array.shape[1] != 2:
                    raise ValueError(
                        f"teacher maps of stage {stage}: expected {len(hr_chips)} x 2 x C x g x g, "
                        f"got {array.shape}"
                    )
        self.hr_branch = None
        if "hr_student" in needs:
            self.hr_branch = self._new_student(teacher_emb)
        if "teacher_features" in needs and teacher is None:
            from lrface.models.dlib_resnet import load_dlib_resnet

            teacher = load_dlib_resnet()
        if teacher is not None:
            teacher = teacher.to(self.device).eval().requires_grad_(False)
        gather = _all_gather if self.world > 1 else None
        self.objective = Objective(
            self.student, self.losses, self.hr_branch, teacher, gather, config.precision
        )
        self.objective.to(self.device)
        self.adda = adda_modules(self.losses)
        self.ema: AveragedModel | None = None
        if config.ema_decay:
            self.ema = AveragedModel(
                self.student,
                multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
                use_buffers=True,
            )

        params = [p for p in self.student.parameters() if p.requires_grad]
        if self.hr_branch is not None:
            params += [p for p in self.hr_branch.parameters() if p.requires_grad]
        params += [p for p in loss_parameters(self.losses) if p.requires_grad]
        self.params = params
        self.optimizer = _make_optimizer(config, params)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(config, step)
        )
        self.model: nn.Module = self.objective
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            adda_ids = {id(p) for adda in self.adda for p in adda.parameters()}
            ignored = [n for n, p in self.objective.named_parameters() if id(p) in adda_ids]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.objective, ignored
            )
            ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
            self.model = DistributedDataParallel(self.objective, device_ids=ids)
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

    def _new_student(self, teacher_emb: np.ndarray) -> nn.Module:
        """The configured student; a pinned common component takes the teacher's direction."""
        student = create_student(self.config.student, **self.config.student_kwargs)
        if getattr(student, "common", None) is not None:
            student.common.set_direction(torch.as_tensor(teacher_emb))
        return student

    # ---------------------------------------------------------------- state
    def _rng_state(self) -> torch.Tensor:
        """This rank's RNG states as one uint8 tensor (CPU, then CUDA when in use)."""
        states = [torch.get_rng_state()]
        if self.device.startswith("cuda"):
            states.append(torch.cuda.get_rng_state(self.device))
        return torch.cat(states)

    def _set_rng_state(self, state: torch.Tensor) -> None:
        cpu = torch.get_rng_state()
        torch.set_rng_state(state[: len(cpu)].clone())
        if self.device.startswith("cuda"):
            torch.cuda.set_rng_state(state[len(cpu) :].clone(), self.device)

    def _state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Every tensor and every scalar of the run state except the student's weights."""
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
        rng = self._rng_state()
        if self.world > 1:
            rng = _all_gather(rng.to(self.device)).cpu().view(self.world, -1)
        else:
            rng = rng.view(1, -1)
        tensors["rng"] = rng
        if self.ema is not None:  # the average is the exported student; keep the raw weights
            tensors.update({f"student_raw.{k}": v for k, v in self.student.state_dict().items()})
            tensors["ema.n_averaged"] = self.ema.n_averaged
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
            "monitor": list(self._monitor.history),
        }
        return tensors, info

    def _student_info(self) -> dict:
        return {
            "name": self.config.student,
            "kwargs": self.config.student_kwargs,
            "input_size": self.student.input_size,
            "dim": self.student.dim,
            "step": self.step,
            "method": self.config.method,
            "metrics": self.metrics,
        }

    def save(self, directory: Path) -> None:
        """Checkpoint (collective under DDP: every rank contributes its RNG state)."""
        tensors, info = self._state()
        if self.rank == 0:
            save_checkpoint(directory, self.deployed, self._student_info(), tensors, info)

    def load(self, directory: Path) -> None:
        """Restore a checkpoint written by ``save`` (same world size)."""
        from safetensors.torch import load_file

        tensors, info = load_training_state(directory)
        saved = info["config"]
        changed = [k for k in _RESUME_KEYS if saved.get(k) != self.config.to_dict()[k]]
        if changed:
            raise ValueError(f"{directory}: cannot resume with a different {', '.join(changed)}")
        if info["world_size"] != self.world:
            raise ValueError(
                f"{directory}: saved by {info['world_size']} processes, resuming with {self.world}"
            )

        def group(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        exported = load_file(str(directory / "student.safetensors"))
        if self.ema is not None:
            self.ema.module.load_state_dict(exported)
            self.ema.n_averaged.copy_(tensors["ema.n_averaged"])
            self.student.load_state_dict(group("student_raw."))
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
        self._set_rng_state(tensors["rng"][self.rank])
        self.step = info["step"]
        self.best_metric, self.best_step = info["best_metric"], info["best_step"]
        self.metrics = info["metrics"]
        self._monitor.history.extend(info["monitor"])
        self.objective.to(self.device)

    # ---------------------------------------------------------------- loop
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

    def _evaluate(self, logs: _Logs | None) -> None:
        """Evaluate on rank 0; every rank then joins in saving ``best`` if it improved."""
        improved = False
        if self.rank == 0:
            self.metrics = {k: float(v) for k, v in self.evaluate_fn(self.encoder()).items()}
            self.student.train()
            logs.row("eval.csv", self.step, self.metrics)
            value = self.metrics.get(self.config.select_metric)
            if value is None:
                raise KeyError(
                    f"select_metric {self.config.select_metric!r} not among the evaluation "
                    f"metrics {sorted(self.metrics)}"
                )
            improved = self.best_metric is None or value > self.best_metric
            if improved:
                self.best_metric, self.best_step = value, self.step
        if self.world > 1:
            flag = torch.tensor([int(improved)], device=self.device)
            dist.broadcast(flag, 0)
            improved = bool(flag.item())
        if improved:
            self.save(self.run_dir / "best")

    def _checkpoint(self) -> None:
        self.save(self.run_dir / "checkpoints" / f"step-{self.step:07d}")
        if self.rank == 0:
            for old in checkpoints(self.run_dir)[: -self.config.keep_checkpoints]:
                shutil.rmtree(old)

    def fit(self, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``config.steps`` (or until ``stop_after``, checkpointing there).

        With ``resume`` continue from the run directory's latest checkpoint, if any.
        """
        config = self.config
        self._monitor = _Monitor(config.divergence_factor)
        if resume and (latest := latest_checkpoint(self.run_dir)) is not None:
            self.load(latest)
        elif checkpoints(self.run_dir):  # every rank checks, so none waits on a failed one
            raise FileExistsError(f"{self.run_dir} holds checkpoints; pass resume or a new out")
        stop = min(config.steps, stop_after if stop_after is not None else config.steps)
        logs = None
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / "config.yaml")
            logs = _Logs(self.run_dir, self.step, config.tensorboard)
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
            loader = self.stream.loader(self.step, stop, config.num_workers)
            for batch in loader:
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
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
                problem = self._monitor.problem(value.item())
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
