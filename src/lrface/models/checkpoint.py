"""Trained students read back from their checkpoints (safetensors + JSON, no pickles).

A checkpoint directory holds ``student.safetensors`` + ``student.json`` (registry name,
constructor kwargs, input size): all that ``load_student`` needs. ``lrface train`` writes them
beside the training state (``train.safetensors`` + ``train.json``, see ``train.checkpoint``)
in a run directory's ``checkpoints/step-NNNNNNN`` and ``best``. A run directory loads its
latest checkpoint (the final one of a finished run), ``RUN/best`` the one selected during
training. An ensemble is a directory of ``member-K/`` runs, each loaded at its final checkpoint.

Reading a student is a model concern, so it lives here and needs nothing from ``train/``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file
from torch import nn

from lrface.models.encoder import TorchEncoder
from lrface.paths import file_digest

STUDENT_WEIGHTS = "student.safetensors"
STUDENT_INFO = "student.json"
TRAIN_INFO = "train.json"
MEMBER_PREFIX = "member-"

TEACHER_ENCODER = "dlib-resnet-torch"
"""The registered encoder every student is distilled from (its gallery side)."""


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


def configured_steps(run_dir: str | Path) -> int:
    """The step count in a run directory's ``config.yaml`` (``lrface train`` writes it whole)."""
    config = Path(run_dir) / "config.yaml"
    data = yaml.safe_load(config.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("steps"), int):
        raise ValueError(f"{config}: no integer 'steps' setting")
    return data["steps"]


def finished_checkpoint(run_dir: str | Path) -> Path | None:
    """A run's last checkpoint if it is at the configured step count, else ``None``.

    The final checkpoint, not ``best/``: in the LFW protocols ``best`` is selected on the
    held-out pairs themselves, so per-fold and ensemble results use the final one.
    """
    final = latest_checkpoint(run_dir)
    if final is None or not (Path(run_dir) / "config.yaml").is_file():
        return None
    return final if int(final.name[5:]) == configured_steps(run_dir) else None


def member_runs(path: str | Path) -> list[Path]:
    """The ``member-K/`` run directories of an ensemble (``lrface train --members``), by K."""
    path = Path(path)
    found = [p for p in path.glob(f"{MEMBER_PREFIX}*") if p.name[len(MEMBER_PREFIX) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(MEMBER_PREFIX) :]))


def fold_runs(path: str | Path) -> tuple[dict[int, Path], list[Path]]:
    """``({k: final checkpoint}, unfinished runs)`` for a directory of ``fold-K/`` training
    runs (or ``fold-K/`` ensembles of ``member-J/`` runs); empty for anything else.

    The final checkpoint, not ``best/`` (best is selected on the held-out fold itself); a run
    whose last checkpoint is not at its configured step count is unfinished and left out.
    """
    path = Path(path)
    runs, unfinished = {}, []
    for run in sorted(path.glob("fold-*")) if path.is_dir() else []:
        if not run.name[5:].isdigit():
            continue
        if member_runs(run):  # an ensemble of member-J/ runs; loading checks each member
            runs[int(run.name[5:])] = run
            continue
        if not (run / "config.yaml").is_file():
            continue
        final = finished_checkpoint(run)
        if final is not None:
            runs[int(run.name[5:])] = final
        elif latest_checkpoint(run) is not None:
            unfinished.append(run)
    return runs, unfinished


def resolve_student_dir(path: str | Path) -> Path:
    """A checkpoint directory as is; a run directory -> its latest (final) checkpoint.

    Never ``best/`` unless it is named (``RUN/best``): ``best`` is picked on the run's
    evaluation pairs, which in the LFW protocols are the test pairs themselves.
    """
    path = Path(path)
    if (path / STUDENT_WEIGHTS).is_file():
        return path
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
    if info.get("fuse_teacher"):
        student = fuse_with_teacher(student)
    return student.to(device).eval(), info


def fuse_with_teacher(student: nn.Module) -> nn.Module:
    """The student and the teacher as one encoder: the unit mean of their unit embeddings.

    A distilled student lands in the teacher's space but errs differently from it on the same
    low-resolution face, so the average beats both (LFW View 2, docs/lrface-lr-v2.md), at the
    cost of running both networks. The teacher part is dlib's ResNet with the shipped weights,
    fed the same upsampled face; only the student's weights are in the checkpoint.
    """
    from lrface.models.students import EnsembleStudent, create_student

    teacher = create_student("teacher-init", pretrained=True)
    if (teacher.input_size, teacher.dim) != (student.input_size, student.dim):
        raise ValueError(
            f"only a student with the teacher's input ({teacher.input_size} px) and "
            f"{teacher.dim}-d output can be fused with it"
        )
    return EnsembleStudent([teacher, student])


def load_student_weights(student: nn.Module, name: str, source: str | Path) -> None:
    """Copy the weights of ``source`` (a shipped student's name, a checkpoint or a run) into
    ``student``, a freshly built ``name`` student; any other architecture is an error."""
    from lrface.models.pretrained import MANIFEST, pretrained_dir

    directory = pretrained_dir(str(source)) if str(source) in MANIFEST else None
    directory = directory or resolve_student_dir(source)
    info = json.loads((directory / STUDENT_INFO).read_text())
    if info["name"] != name:
        raise ValueError(f"{source}: holds a {info['name']!r} student, not {name!r}")
    student.load_state_dict(load_file(str(directory / STUDENT_WEIGHTS)))


def fold_for_inference(student: nn.Module) -> nn.Module:
    """``student`` with each dlib ResNet inside it (a ``teacher-init`` student, the teacher
    half of a fused model) swapped for its folded channels-last copy (``fuse_for_inference``):
    the same function up to float rounding, faster on CPU (docs/results.md, section 5). Not
    for training: the
    folded networks have no affine layers left to train."""
    from lrface.models.dlib_resnet import fuse_for_inference
    from lrface.models.students import TeacherInitStudent

    for module in [m for m in student.modules() if isinstance(m, TeacherInitStudent)]:
        module.net = fuse_for_inference(module.net)
    return student


def load_student_encoder(
    path: str | Path, batch_size: int = 64, device: str = "cpu", fold: bool = True
):
    """A trained student as a ``FaceEncoder``; its cache key hashes the weights file.
    ``fold``: run its dlib ResNets folded (``fold_for_inference``; False only to measure it)."""
    student, info = load_student(path, device)
    encoder = TorchEncoder(
        fold_for_inference(student) if fold else student,
        name=info["name"],
        input_size=student.input_size,
        dim=student.dim,
        batch_size=batch_size,
        device=device,
        key=f"student-{info['name']}{'+teacher' if info.get('fuse_teacher') else ''}-"
        f"{info['weights_sha1'][:16]}",
    )
    encoder.teacher = TEACHER_ENCODER
    encoder.size_cutoff = info.get("size_cutoff")
    return encoder
