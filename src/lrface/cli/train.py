"""``lrface train``, ``lrface decontaminate`` and ``lrface package-student``: training a
student (the runner is ``lrface.train.runner``), keeping LFW's people out of its training
faces, and packaging it for shipping.

Settings come from the defaults, then ``--config`` (YAML/JSON), then the flags given. Under
``torchrun --nproc-per-node N -m lrface.cli train ...`` each process trains its share.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lrface.cli.common import fail, reported
from lrface.constants import DEFAULT_TEACHER

Opt = typer.Option


def train(
    method: Annotated[str | None, Opt(help="Method: a name (adda+l2, ...) or l2=5,nst=50.")] = None,
    student: Annotated[str | None, Opt(help="Student: compact or teacher-init.")] = None,
    view: Annotated[str | None, Opt(help="view1 (dev split) or view2 (with --fold).")] = None,
    fold: Annotated[int | None, Opt(help="View 2 fold (0-9) to hold out.")] = None,
    folds: Annotated[str | None, Opt(help="'all': the ten View 2 folds, mean +- std.")] = None,
    steps: Annotated[int | None, Opt(help="Training steps.")] = None,
    batch_size: Annotated[int | None, Opt(help="Batch size per process.")] = None,
    lr: Annotated[float | None, Opt(help="Base learning rate.")] = None,
    seed: Annotated[int | None, Opt(help="Random seed.")] = None,
    members: Annotated[
        int | None,
        Opt(help="Train N students side by side (seeds seed, seed+1, ...); use their mean."),
    ] = None,
    eval_every: Annotated[int | None, Opt(help="Evaluate every N steps (0: at the end).")] = None,
    config: Annotated[Path | None, Opt(help="YAML or JSON TrainConfig.")] = None,
    overrides: Annotated[
        list[str] | None,
        Opt(
            "--set",
            help="Override any config field: key=value or nested.key=value (YAML value), "
            "e.g. --set weight_decay=0.05 --set degradation.max_size=24. Repeatable.",
        ),
    ] = None,
    out: Annotated[Path | None, Opt(help="Run directory.")] = None,
    resume: Annotated[bool, Opt(help="Continue from the run's last checkpoint.")] = False,
    stop_after: Annotated[int | None, Opt(help="Stop (and checkpoint) after this step.")] = None,
    device: Annotated[str | None, Opt(help="cpu or cuda.")] = None,
    precision: Annotated[
        str | None, Opt(help="auto (bf16 where the hardware has it), fp32, or bf16.")
    ] = None,
    lfw: Annotated[Path | None, Opt(help="LFW root (default: $LRFACE_LFW, ../shared).")] = None,
    progress: Annotated[bool, Opt(help="Show progress bars.")] = True,
) -> None:
    """Train a student to put LR faces into the teacher's embedding space."""
    from lrface.train.runner import ConfigError, build_config, check_config, run_training

    if folds is not None and folds != "all":
        raise fail("--folds takes 'all'")
    if fold is not None and view is None:
        view = "view2"
    flags = {"method": method, "student": student, "steps": steps, "batch_size": batch_size,
             "lr": lr, "seed": seed, "members": members, "eval_every": eval_every,
             "device": device, "precision": precision}  # fmt: skip
    flags |= {"view": "view2" if folds else view, "fold": 0 if folds else fold}
    flags |= {"out": out and str(out), "lfw": lfw and str(lfw)}
    try:
        cfg = build_config(config, overrides, **flags)
    except OSError as exc:  # --config missing or unreadable
        raise fail(f"--config: {exc.filename}: cannot read ({exc.strerror})") from None
    except ValueError as exc:  # a bad --set, a malformed --config or a value it rejects
        raise fail(str(exc)) from None
    with reported(ConfigError):  # a setting that cannot work, before any data is prepared
        check_config(cfg)
    with reported(ConfigError, RuntimeError):
        summary = run_training(cfg, folds is not None, resume, stop_after, progress)
    if summary is None:
        return
    if folds is None:
        typer.echo(json.dumps(summary, indent=2))
    else:
        mean, std = summary["mean"], summary["std"]
        typer.echo(f"{cfg.select_metric}: {mean:.4f} +- {std:.4f} (10 folds)")


def decontaminate(
    folder: Annotated[str, typer.Argument(help="'utkface' or a folder of face images.")],
    far: Annotated[
        float, Opt(help="Per-comparison false accept rate on LFW's different-person pairs.")
    ] = 1e-5,
    lfw: Annotated[Path | None, Opt(help="LFW root (default: $LRFACE_LFW, ../shared).")] = None,
    sheet: Annotated[
        Path | None, Opt(help="Also write a contact sheet of matched pairs (PNG).")
    ] = None,
    workers: Annotated[int, Opt(help="Processes for face alignment.")] = 2,
    out: Annotated[
        Path | None,
        Opt(
            help="Where to write the list (default: the user's cache, where training looks: "
            "~/.cache/lrface/decontamination/<name>.json)."
        ),
    ] = None,
) -> None:
    """List the images of a face folder that match any LFW image (they are never trained on).

    Writes the list to the user's cache (or --out), never into the installed package; training
    on that folder requires it and applies it (the shipped lists are read-only package data).
    """
    from lrface.data.unlabelled import user_decontamination_path
    from lrface.models.factory import create_encoder
    from lrface.paths import DatasetNotFoundError
    from lrface.train.sources import decontaminate as find_matches

    teacher = create_encoder(DEFAULT_TEACHER)
    with reported(DatasetNotFoundError, FileNotFoundError):
        report = find_matches(folder, teacher, str(lfw) if lfw else None, far, workers=workers)
    path = out or user_decontamination_path(report["folder"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    typer.echo(
        f"{report['folder']}: {report['images']} images, {report['aligned']} aligned "
        f"({report['whole_image_fallbacks']} by the whole-image fallback), "
        f"{len(report['unreadable'])} unreadable; threshold {report['threshold']:.4f} "
        f"(FAR {far:g} per comparison; {100 * report['lfw_same_person_pairs_above_threshold']:.1f}"
        f"% of LFW same-person pairs reach it); dropped {report['dropped_count']} -> {path}"
    )
    if sheet is not None:
        from lrface.train.sources import contact_sheet

        contact_sheet(report, lfw, sheet)
        typer.echo(f"contact sheet: {sheet}")


def package_student(
    checkpoint: Annotated[Path, typer.Argument(help="Trained student: checkpoint or run dir.")],
    out: Annotated[Path, typer.Argument(help="Directory to write the packaged student to.")],
    fuse_teacher: Annotated[
        bool,
        typer.Option(
            "--fuse-teacher",
            help="The packaged encoder averages the student's and the teacher's unit embeddings "
            "(two networks per face).",
        ),
    ] = False,
    size_cutoff: Annotated[
        float | None,
        typer.Option(help="Face width (px) under which pipelines route faces to it by default."),
    ] = None,
) -> None:
    """Package a trained student for shipping: float16 weights and its student.json.

    Then measure it where it lies (``lrface benchmark --encoder OUT``, which also stores its
    calibration there), copy OUT to ``src/lrface/models/pretrained/<name>/`` and pin the
    printed hashes in ``lrface.models.pretrained.MANIFEST``.
    """
    from lrface.models.checkpoint import finished_checkpoint, resolve_student_dir
    from lrface.models.pretrained import package_student as package

    with reported(FileNotFoundError):
        source = finished_checkpoint(checkpoint) or resolve_student_dir(checkpoint)
    package(source, out, fuse_teacher=fuse_teacher, size_cutoff=size_cutoff)
    typer.echo(f"packaged {source} -> {out}")
