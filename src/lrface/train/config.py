"""One training run's settings as a plain dataclass that round-trips through YAML and JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lrface.data.degrade import TrainDegradation

TUPLE_FIELDS = tuple(
    f.name for f in dataclasses.fields(TrainDegradation) if str(f.type).startswith("tuple")
)
"""The degradation's range settings, which YAML and JSON hand back as lists."""


@dataclass
class TrainConfig:
    """Everything that determines a run (with the data, it fixes the result bit for bit).

    method: a ``losses.methods.METHODS`` name, ``"a+b"`` or ``"a=w1,b=w2"``.
    method_kwargs: extra constructor kwargs per loss name, merged into the parsed spec.
    pairing: ``paired`` (the student's LR face and the teacher's HR face are the same image,
        for distillation) or ``unpaired`` (independent shuffles of the HR source and the LR
        target stream, as in ADDA; pairwise losses then see unrelated rows).
    hr_flip: random horizontal flip of both sides of a pair. The teacher targets are then the
        teacher's flip-averaged embeddings, which are mirror-symmetric, so one target serves
        both orientations (``lrface.train.lfw`` computes them that way).
    adam_betas: the student's AdamW betas (ADDA, Tzeng et al.: 0.5 / 0.9 for both networks;
        the discriminator's own optimizer is set in the ADDA loss).
    schedule: ``cosine`` (to ``min_lr_ratio``), ``step`` (x ``gamma`` at each milestone) or
        ``constant``; all after a linear warm-up of ``warmup_steps``.
    precision: ``auto`` (default: ``bf16`` where the CPU has AVX512-BF16 or AMX, or the CUDA
        device supports bf16, else ``fp32``; the choice is printed), ``fp32``, or ``bf16`` to
        run the student's (and a feature-matching teacher's) forward pass under bfloat16
        autocast; losses and weights stay fp32 (faster steps on a CPU with AVX512-BF16:
        docs/results.md, section 5).
    ema_decay: keep an exponential moving average of the student's weights (and BN
        statistics) with this decay per step, e.g. 0.999; evaluation, ``best/`` and the exported
        ``student.safetensors`` then use the average (0: off).
    detected_prob: the share of LR inputs taken, instead of the random degradation, from the
        training images as the pipeline sees them (whole image shrunk so the face is one of
        ``detected_sizes`` px wide, MTCNN, one warp to the student's input;
        ``data.detected``); rows without a detected face fall back to the degradation.
    detected_upscale_max: faces up to this width (px) are detected on the shrunk image
        upscaled 2x (``data.detected.DetectionPlan``; 0: never).
    detected_unlabelled_every: detected versions of every k-th image of the unlabelled
        folders too (0: none; their other rows fall back to the degradation). Detection costs
        about a tenth of a second an image and width on one thread, hence the subsample.
    members: train this many students side by side, one process each, seeds ``seed``,
        ``seed + 1``, ...; their average is the model (``train.members``, ``EnsembleStudent``).
    select_metric: evaluation metric that picks the best checkpoint (higher is better).
    divergence_factor: stop when the loss exceeds this multiple of its running median.
    view / fold / lfw: View 1 (train on everyone outside pairsDevTest), a View 2 fold, or
        ``view2-all`` (train on the LFW people in no View 2 pair, evaluate on all ten folds: one
        model for the whole of View 2, the cross-dataset protocol).
    lfw_train: train on the split's LFW images (off: only the unlabelled folders).
    unlabelled: face folders without identity labels trained on besides LFW (``utkface`` or a
        path), each image its own identity, minus its packaged decontamination list
        (``train.sources``).
    init_from: start the student from these weights instead of its default initialization: a
        shipped student's name (``lrface-lr-v1``; its student network, never a fused teacher),
        a checkpoint or a run directory (its final checkpoint). The architecture must be
        ``student``'s. Optimizer and schedule start fresh, so this continues training with a
        new warm-up (a warm restart) or fine-tunes.
    fuse_teacher: train the student as a fused pair serves it (``lrface package-student
        --fuse-teacher``): every loss sees the unit mean of the student's and the frozen
        teacher's unit embeddings of the same LR input, so the student learns what the teacher
        misses on that face instead of the whole target (teacher-init students only; one more
        no-grad teacher pass per step).
    """

    method: str = "l2"
    method_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    student: str = "compact"
    student_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"
    warmup_steps: int = 500
    min_lr_ratio: float = 0.01
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    grad_clip: float | None = 10.0
    batch_size: int = 128
    steps: int = 20000
    pairing: str = "paired"
    hr_flip: bool = True
    degradation: TrainDegradation = field(default_factory=TrainDegradation)
    num_workers: int = 1
    log_every: int = 20
    eval_every: int = 1000
    eval_sizes: list[int] = field(default_factory=lambda: [8, 12, 16])
    select_metric: str = "hr-lr/mean/accuracy"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    divergence_factor: float = 1e3
    tensorboard: bool = True
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    ema_decay: float = 0.0
    detected_prob: float = 0.0
    detected_sizes: list[int] = field(default_factory=lambda: [12, 16, 20, 24])
    detected_upscale_max: int = 0
    detected_unlabelled_every: int = 0
    members: int = 1
    out: str = "runs/default"
    view: str = "view1"
    fold: int | None = None
    lfw: str | None = None
    lfw_train: bool = True
    unlabelled: list[str] = field(default_factory=list)
    init_from: str | None = None
    fuse_teacher: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.degradation, dict):
            deg = dict(self.degradation)
            for key in TUPLE_FIELDS:
                if key in deg:
                    deg[key] = tuple(deg[key])
            self.degradation = TrainDegradation(**deg)
        choices = {
            "optimizer": ("adamw", "sgd"),
            "schedule": ("cosine", "step", "constant"),
            "pairing": ("paired", "unpaired"),
            "view": ("view1", "view2", "view2-all"),
            "precision": ("auto", "fp32", "bf16"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.view == "view2" and self.fold is None:
            raise ValueError("view2 needs a fold (0-9)")
        if self.detected_unlabelled_every < 0 or self.detected_upscale_max < 0:
            raise ValueError("detected_unlabelled_every and detected_upscale_max must be >= 0")
        if not self.lfw_train and not self.unlabelled:
            raise ValueError("lfw_train: false needs unlabelled face folders to train on")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.detected_prob <= 1.0 or not all(s > 0 for s in self.detected_sizes):
            raise ValueError(
                f"detected_prob must be in [0, 1] and detected_sizes positive, got "
                f"{self.detected_prob} and {self.detected_sizes}"
            )
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if self.steps < 1 or self.batch_size < 1 or self.members < 1:
            raise ValueError("steps, batch_size and members must be positive")

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-safe dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {unknown}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied; ``None`` values are ignored (unset CLI flags)."""
        data = self.to_dict()
        data.update({k: v for k, v in changes.items() if v is not None})
        return TrainConfig.from_dict(data)

    def override(self, assignments: list[str]) -> TrainConfig:
        """A copy with ``key.path=value`` assignments applied (values parsed as YAML).

        ``weight_decay=0.05``, ``degradation.max_size=24``, ``student_kwargs.dropout=0.2``,
        ``student_kwargs.widths=[48,96,192,384]``, ``method_kwargs.prototype.scale=128``: any
        field, nested ones by dotted path.
        """
        data = self.to_dict()
        for assignment in assignments:
            path, sep, text = assignment.partition("=")
            keys = path.strip().split(".")
            if not sep or not all(keys):
                raise ValueError(f"expected key.path=value, got {assignment!r}")
            node, free_form = data, False
            for key in keys[:-1]:
                child = node.get(key)
                free_form = free_form or key.endswith("_kwargs")
                if child is None and free_form:  # e.g. method_kwargs.prototype.scale
                    child = node[key] = {}
                if not isinstance(child, dict):
                    raise ValueError(f"{assignment!r}: {key!r} is not a nested setting")
                node = child
            node[keys[-1]] = yaml.safe_load(text)
        try:
            return TrainConfig.from_dict(data)
        except TypeError as exc:  # an unknown nested field, e.g. degradation.size
            raise ValueError(f"bad override in {assignments}: {exc}") from None

    def save(self, path: str | Path) -> None:
        """Write YAML (``.yaml``/``.yml``) or JSON (anything else)."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        return cls.from_dict(data or {})
