"""Checkpoints as safetensors + JSON (no pickles), and students loaded back as encoders.

A checkpoint directory holds

* ``student.safetensors`` + ``student.json`` (registry name, constructor kwargs, input size):
  all that ``load_student_encoder`` needs;
* ``train.safetensors``: every other tensor of the run state (loss modules such as the
  discriminators, optimizer moments, RNG states), keys prefixed by their group;
* ``train.json``: the rest (step, config, optimizer param groups and scalar state,
  scheduler state, metrics).

Optimizer state dicts are split in two: tensors go to ``<group>.state.<param>.<key>`` in the
safetensors file, everything else keeps its structure in JSON (tuples tagged, so Adam's
``betas`` come back as a tuple). A run directory keeps ``checkpoints/step-NNNNNNN`` and
``best``; directories are written under a temporary name and renamed, so a crash mid-write
never leaves a half checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lrface.models.encoder import TorchEncoder
from lrface.paths import file_digest
from lrface.train.config import TrainConfig

STUDENT_WEIGHTS = "student.safetensors"
STUDENT_INFO = "student.json"
TRAIN_TENSORS = "train.safetensors"
TRAIN_INFO = "train.json"
MEMBER_PREFIX = "member-"

TEACHER_ENCODER = "dlib-resnet-torch"
"""The registered encoder every student is distilled from (its gallery side)."""


def _encode(value: Any) -> Any:
    """JSON-safe form of optimizer/scheduler state (tuples tagged, tensors refused)."""
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        raise TypeError("tensors belong in safetensors, not JSON")
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def split_state_dict(prefix: str, state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer ``state_dict`` as (tensors keyed ``prefix.state.i.key``, JSON structure)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        scalars[str(index)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{index}.{key}"] = value
            else:
                scalars[str(index)][key] = _encode(value)
    meta = {"param_groups": _encode(state["param_groups"]), "scalars": scalars}
    return tensors, meta


def join_state_dict(prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of ``split_state_dict``."""
    state: dict[int, dict[str, Any]] = {
        int(i): {k: _decode(v) for k, v in entries.items()}
        for i, entries in meta["scalars"].items()
    }
    head = f"{prefix}.state."
    for name, tensor in tensors.items():
        if name.startswith(head):
            index, key = name[len(head) :].split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": _decode(meta["param_groups"])}


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(path))


def save_checkpoint(
    directory: str | Path,
    student: nn.Module,
    student_info: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    info: dict[str, Any],
) -> Path:
    """Write a checkpoint directory atomically (temp dir + rename); returns its path."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save_tensors(student.state_dict(), tmp / STUDENT_WEIGHTS)
    (tmp / STUDENT_INFO).write_text(json.dumps(student_info, indent=2) + "\n")
    _save_tensors(tensors, tmp / TRAIN_TENSORS)
    (tmp / TRAIN_INFO).write_text(json.dumps(_encode(info), indent=2) + "\n")
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old)
    else:
        os.replace(tmp, directory)
    return directory


def load_training_state(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, info)`` of a checkpoint's training state."""
    directory = Path(directory)
    info = _decode(json.loads((directory / TRAIN_INFO).read_text()))
    return load_file(str(directory / TRAIN_TENSORS)), info


def checkpoint_metrics(directory: str | Path) -> dict[str, float]:
    """The evaluation a checkpoint was saved with (the run's final step is always evaluated)."""
    return json.loads((Path(directory) / TRAIN_INFO).read_text())["metrics"]


def checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's periodic checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")]
    found = [p for p in found if p.name[5:].isdigit() and (p / TRAIN_INFO).is_file()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def finished_checkpoint(run_dir: str | Path) -> Path | None:
    """A run's last checkpoint if it is at the configured step count, else ``None``.

    The final checkpoint, not ``best/``: in the LFW protocols ``best`` is selected on the
    held-out pairs themselves, so per-fold and ensemble results use the final one.
    """
    final = latest_checkpoint(run_dir)
    config = Path(run_dir) / "config.yaml"
    if final is None or not config.is_file():
        return None
    return final if int(final.name[5:]) == TrainConfig.load(config).steps else None


def member_runs(path: str | Path) -> list[Path]:
    """The ``member-K/`` run directories of an ensemble (``lrface train --members``), by K."""
    path = Path(path)
    found = [p for p in path.glob(f"{MEMBER_PREFIX}*") if p.name[len(MEMBER_PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(MEMBER_PREFIX) :]))


def resolve_student_dir(path: str | Path) -> Path:
    """A checkpoint directory as is; a run directory -> its ``best``, else its latest."""
    path = Path(path)
    if (path / STUDENT_WEIGHTS).is_file():
        return path
    if (path / "best" / STUDENT_WEIGHTS).is_file():
        return path / "best"
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"{path}: neither a checkpoint nor a run directory with one")
    return latest


def load_student(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a student from its checkpoint (``student.json`` names it) and load its weights.

    A directory of ``member-K/`` runs gives their ``EnsembleStudent``, each member at its
    final checkpoint; an unfinished member is an error (the ensemble would be another model).
    """
    from lrface.models.students import EnsembleStudent, create_student

    members = member_runs(path)
    if members:
        finals = [finished_checkpoint(run) for run in members]
        for run, final in zip(members, finals, strict=True):
            if final is None:
                raise FileNotFoundError(
                    f"{run}: ensemble member has not reached its configured steps; "
                    "finish it with `lrface train ... --resume`"
                )
        loaded = [load_student(final, device) for final in finals]
        names = sorted({info["name"] for _, info in loaded})
        digests = "".join(info["weights_sha1"] for _, info in loaded)
        info = {
            "name": f"ensemble-{len(loaded)}x-{'+'.join(names)}",
            "members": [str(final) for final in finals],
            "weights_sha1": hashlib.sha1(digests.encode()).hexdigest(),
        }
        return EnsembleStudent([module for module, _ in loaded]).to(device).eval(), info

    directory = resolve_student_dir(path)
    info = json.loads((directory / STUDENT_INFO).read_text())
    kwargs = dict(info.get("kwargs", {}))
    if info["name"] == "teacher-init":
        kwargs["pretrained"] = False  # the checkpoint holds every weight
    student = create_student(info["name"], **kwargs)
    student.load_state_dict(load_file(str(directory / STUDENT_WEIGHTS), device=device))
    info["weights_sha1"] = file_digest(directory / STUDENT_WEIGHTS, "sha1")
    return student.to(device).eval(), info


def load_student_encoder(path: str | Path, batch_size: int = 64, device: str = "cpu"):
    """A trained student as a ``FaceEncoder``; its cache key hashes the weights file."""
    student, info = load_student(path, device)
    encoder = TorchEncoder(
        student,
        name=info["name"],
        input_size=student.input_size,
        dim=student.dim,
        batch_size=batch_size,
        device=device,
        key=f"student-{info['name']}-{info['weights_sha1'][:16]}",
    )
    encoder.teacher = TEACHER_ENCODER
    return encoder
