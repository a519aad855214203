"""Training checkpoints as safetensors + JSON (no pickles): the state a run resumes from.

A checkpoint directory holds

* ``student.safetensors`` + ``student.json`` (registry name, constructor kwargs, input size):
  all that ``models.checkpoint.load_student_encoder`` needs to read the student back;
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

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lrface.models.checkpoint import STUDENT_INFO, STUDENT_WEIGHTS, TRAIN_INFO
from lrface.paths import readable_by_umask

TRAIN_TENSORS = "train.safetensors"


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
    readable_by_umask(path)


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
