"""``lrface train``: train a student on an LFW split (View 1, one View 2 fold, or all ten).

Settings come from the defaults, then ``--config`` (YAML/JSON), then the flags given. Under
``torchrun --nproc-per-node N -m lrface.cli train ...`` each process trains its share. With
``members`` > 1 (``--members N``) N students with consecutive seeds train side by side
(``train.members``) and their average is scored.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lrface.machine import describe_machine

if TYPE_CHECKING:
    from lrface.train.config import TrainConfig

Opt = typer.Option


def build_config(
    config: Path | None = None, overrides: list[str] | None = None, **flags
) -> TrainConfig:
    """Defaults, overridden by the config file, then by ``key.path=value`` overrides, then by
    the flags that are not None."""
    from lrface.train.config import TrainConfig

    base = TrainConfig.load(config) if config is not None else TrainConfig()
    return base.override(overrides or []).replace(**flags)


def check_before_training(config: TrainConfig) -> None:
    """BadParameter for a method, student, LFW root or run directory that cannot work, before
    any data is prepared (alignment and teacher embeddings take minutes on a cold cache)."""
    from lrface.losses.registry import parse_method
    from lrface.models.students import list_students
    from lrface.paths import DatasetNotFoundError, resolve_lfw

    try:
        parse_method(config.method)
    except (KeyError, ValueError) as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--method") from None
    if config.student not in list_students():
        raise typer.BadParameter(
            f"unknown student {config.student!r}; known: {list_students()}", param_hint="--student"
        )
    try:
        resolve_lfw(config.lfw)
    except DatasetNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lfw") from None
    from lrface.train.sources import load_exclusions, resolve_folder

    for spec in config.unlabelled:  # a folder that is missing or was never decontaminated
        try:
            load_exclusions(resolve_folder(spec)[0], spec)
        except (DatasetNotFoundError, FileNotFoundError) as exc:
            raise typer.BadParameter(str(exc), param_hint="unlabelled") from None
    out = Path(config.out)
    blocking = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise typer.BadParameter(f"{blocking} is a file, not a directory", param_hint="--out")


def detected_faces(config: TrainConfig, data, progress: bool = True):
    """MTCNN's view of the split's training images (``train.detected_bank``)."""
    from lrface.train.detected_bank import training_detected_faces

    return training_detected_faces(config, data.relpaths, progress)


def prepare_split(config: TrainConfig, progress: bool):
    """The split's training data and held-out pairs, and its detected faces if the config
    uses them; rank 0 first under torchrun."""
    from lrface.train.distributed import rank_zero_first
    from lrface.train.lfw import split_data

    def prepare():
        data = split_data(
            config.view,
            config.fold,
            config.lfw,
            flip=config.hr_flip,
            progress=progress,
            lfw_train=config.lfw_train,
            unlabelled=config.unlabelled,
        )
        detected = detected_faces(config, data, progress) if config.detected_prob else None
        return data, detected

    return rank_zero_first(prepare, config.device)


def run_split(config: TrainConfig, resume: bool, stop_after: int | None, progress: bool):
    """Train on the config's LFW split with periodic evaluation on its held-out pairs."""
    from lrface.train.engine import train
    from lrface.train.lfw import make_evaluate_fn

    data, detected = prepare_split(config, progress)
    evaluate_fn = (  # no sizes: no evaluation (figures come from `lrface benchmark`)
        make_evaluate_fn(data.eval_pairs, data.teacher, config.eval_sizes)
        if config.eval_sizes
        else None
    )
    return train(
        config,
        data.hr_chips,
        data.teacher_emb,
        data.labels,
        evaluate_fn=evaluate_fn,
        resume=resume,
        stop_after=stop_after,
        progress=progress,
        teacher_maps=data.teacher_maps,
        detected=detected,
    )


def train_member_on_split(config: TrainConfig, resume: bool, stop_after: int | None) -> None:
    """One ensemble member, in its own process (``train.members``)."""
    run_split(config, resume, stop_after, progress=False)


def run_members(config: TrainConfig, resume: bool, stop_after: int | None, progress: bool):
    """Train ``config.members`` students side by side, then score their average on the split's
    held-out pairs, beside each member's own final-step evaluation; ``None`` if stopped early.
    """
    from lrface.models.checkpoint import finished_checkpoint, load_student_encoder, member_runs
    from lrface.train.checkpoint import checkpoint_metrics
    from lrface.train.lfw import make_evaluate_fn
    from lrface.train.members import train_members

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise typer.BadParameter("members start their own processes; run them without torchrun")
    data, _ = prepare_split(config, progress)  # fills the caches the members read
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.yaml")
    codes = train_members(config, train_member_on_split, resume, stop_after, progress)
    failed = {k: code for k, code in codes.items() if code}
    for k, code in failed.items():
        typer.echo(f"member {k} failed (exit code {code}); see {out}/member-{k}/member.log")
    if failed:
        raise typer.Exit(1)
    if stop_after is not None and stop_after < config.steps:
        typer.echo(f"members stopped at step {stop_after}; continue with --resume")
        return None
    evaluate_fn = make_evaluate_fn(data.eval_pairs, data.teacher, config.eval_sizes)
    metrics = evaluate_fn(load_student_encoder(out))
    members = [
        {"run": str(run), "metrics": checkpoint_metrics(finished_checkpoint(run))}
        for run in member_runs(out)
    ]
    summary = {"members": len(members), "metrics": metrics, "each_member": members}
    (out / "ensemble.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def train_command(
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
    if folds is not None and folds != "all":
        raise typer.BadParameter("--folds takes 'all'")
    if fold is not None and view is None:
        view = "view2"
    try:
        cfg = build_config(
            config,
            overrides,
            method=method,
            student=student,
            view="view2" if folds else view,
            fold=0 if folds else fold,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            members=members,
            eval_every=eval_every,
            out=str(out) if out is not None else None,
            device=device,
            precision=precision,
            lfw=str(lfw) if lfw is not None else None,
        )
    except OSError as exc:  # --config missing or unreadable
        raise typer.BadParameter(
            f"{exc.filename}: cannot read ({exc.strerror})", param_hint="--config"
        ) from None
    except ValueError as exc:  # a bad --set, a malformed --config or a value it rejects
        raise typer.BadParameter(str(exc)) from None
    check_before_training(cfg)
    if folds is None and cfg.members > 1:
        started = time.perf_counter()
        summary = run_members(cfg, resume, stop_after, progress)
        if summary is not None:
            summary.update(
                run_dir=cfg.out,
                wall_s=round(time.perf_counter() - started, 1),
                machine=describe_machine(),
            )
            typer.echo(json.dumps(summary, indent=2))
        return
    if folds is None:
        started = time.perf_counter()
        result = run_split(cfg, resume, stop_after, progress)
        typer.echo(
            json.dumps(
                {
                    "run_dir": str(result.run_dir),
                    "step": result.step,
                    "best_metric": result.best_metric,
                    "best_step": result.best_step,
                    "metrics": result.metrics,
                    "wall_s": round(time.perf_counter() - started, 1),
                    "machine": describe_machine(),
                },
                indent=2,
            )
        )
        return
    finals = []
    for k in range(10):
        fold_cfg = cfg.replace(fold=k, out=str(Path(cfg.out) / f"fold-{k}"))
        if cfg.members > 1:
            summary = run_members(fold_cfg, resume, stop_after, progress)
            metrics = summary["metrics"] if summary else {}
        else:
            metrics = run_split(fold_cfg, resume, stop_after, progress).metrics
        finals.append(metrics.get(cfg.select_metric, float("nan")))
        typer.echo(f"fold {k}: {cfg.select_metric} = {finals[-1]:.4f}")
    summary = {
        "metric": cfg.select_metric,
        "folds": finals,
        "mean": statistics.fmean(finals),
        "std": statistics.pstdev(finals),
        "note": "final-step metric on each held-out fold (no selection on the test fold)",
    }
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "folds.json").write_text(json.dumps(summary, indent=2) + "\n")
    typer.echo(f"{cfg.select_metric}: {summary['mean']:.4f} +- {summary['std']:.4f} (10 folds)")


def decontaminate_command(
    folder: Annotated[str, typer.Argument(help="'utkface' or a folder of face images.")],
    far: Annotated[
        float, Opt(help="Per-comparison false accept rate on LFW's different-person pairs.")
    ] = 1e-5,
    lfw: Annotated[Path | None, Opt(help="LFW root (default: $LRFACE_LFW, ../shared).")] = None,
    sheet: Annotated[
        Path | None, Opt(help="Also write a contact sheet of matched pairs (PNG).")
    ] = None,
    workers: Annotated[int, Opt(help="Processes for face alignment.")] = 2,
) -> None:
    """List the images of a face folder that match any LFW image (they are never trained on).

    Writes the list into the package (``lrface/data/decontamination/<name>.json``), which
    training on that folder requires and applies.
    """
    from lrface.models.registry import create_encoder
    from lrface.paths import DatasetNotFoundError
    from lrface.train.sources import decontaminate, decontamination_path

    try:
        teacher = create_encoder("dlib-resnet-torch")
        report = decontaminate(folder, teacher, str(lfw) if lfw else None, far, workers=workers)
    except (DatasetNotFoundError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    path = decontamination_path(report["folder"])
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


def package_student_command(
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
    from lrface.models.pretrained import package_student

    try:
        source = finished_checkpoint(checkpoint) or resolve_student_dir(checkpoint)
    except FileNotFoundError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    package_student(source, out, fuse_teacher=fuse_teacher, size_cutoff=size_cutoff)
    typer.echo(f"packaged {source} -> {out}")
