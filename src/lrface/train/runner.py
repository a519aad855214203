"""Running a training from a ``TrainConfig``: the LFW split prepared, one student (or an
ensemble of members side by side) trained and scored, or all ten View 2 folds in turn. What
``lrface train`` runs; the loop itself is ``lrface.train.engine``.

Under ``torchrun --nproc-per-node N -m lrface.cli train ...`` each process trains its share.
With ``members`` > 1 N students with consecutive seeds train side by side
(``train.members``) and their average is scored.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from lrface.machine import describe_machine
from lrface.train.config import TrainConfig


class ConfigError(ValueError):
    """A setting that cannot work: ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def build_config(
    config: Path | None = None, overrides: list[str] | None = None, **flags
) -> TrainConfig:
    """Defaults, overridden by the config file, then by ``key.path=value`` overrides, then by
    the flags that are not None."""
    from lrface.train.config import TrainConfig

    base = TrainConfig.load(config) if config is not None else TrainConfig()
    return base.override(overrides or []).replace(**flags)


def check_config(config: TrainConfig) -> None:
    """ConfigError (naming the setting) for a method, student, LFW root, unlabelled folder or
    run directory that cannot work, before any data is prepared (alignment and teacher
    embeddings take minutes on a cold cache)."""
    from lrface.losses.methods import parse_method
    from lrface.models.students import list_students
    from lrface.paths import DatasetNotFoundError, resolve_lfw

    try:
        parse_method(config.method)
    except (KeyError, ValueError) as exc:
        raise ConfigError("method", str(exc.args[0])) from None
    if config.student not in list_students():
        known = list_students()
        raise ConfigError("student", f"unknown student {config.student!r}; known: {known}")
    try:
        resolve_lfw(config.lfw)
    except DatasetNotFoundError as exc:
        raise ConfigError("lfw", str(exc)) from None
    from lrface.data.unlabelled import load_exclusions, resolve_folder

    for spec in config.unlabelled:  # a folder that is missing or was never decontaminated
        try:
            load_exclusions(resolve_folder(spec)[0], spec)
        except (DatasetNotFoundError, FileNotFoundError) as exc:
            raise ConfigError("unlabelled", str(exc)) from None
    out = Path(config.out)
    blocking = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ConfigError("out", f"{blocking} is a file, not a directory")


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
        raise ConfigError("members", "members start their own processes; run them without torchrun")
    data, _ = prepare_split(config, progress)  # fills the caches the members read
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "config.yaml")
    codes = train_members(config, train_member_on_split, resume, stop_after, progress)
    failed = {k: code for k, code in codes.items() if code}
    if failed:
        raise RuntimeError(
            "; ".join(
                f"member {k} failed (exit code {code}); see {out}/member-{k}/member.log"
                for k, code in failed.items()
            )
        )
    if stop_after is not None and stop_after < config.steps:
        print(f"members stopped at step {stop_after}; continue with --resume")
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


def run_training(
    config: TrainConfig, all_folds: bool, resume: bool, stop_after: int | None, progress: bool
) -> dict | None:
    """Train what ``config`` describes (``all_folds``: each of the ten View 2 folds in turn,
    into ``<out>/fold-K``) and return the summary ``lrface train`` prints (None when members
    were stopped early)."""
    started = time.perf_counter()
    if all_folds:
        return run_folds(config, resume, stop_after, progress)
    if config.members > 1:
        summary = run_members(config, resume, stop_after, progress)
        if summary is not None:
            summary.update(run_dir=config.out)
    else:
        result = run_split(config, resume, stop_after, progress)
        summary = {
            "run_dir": str(result.run_dir),
            "step": result.step,
            "best_metric": result.best_metric,
            "best_step": result.best_step,
            "metrics": result.metrics,
        }
    if summary is not None:
        summary.update(wall_s=round(time.perf_counter() - started, 1), machine=describe_machine())
    return summary


def run_folds(config: TrainConfig, resume: bool, stop_after: int | None, progress: bool) -> dict:
    """The ten View 2 folds in turn; the final-step metric of each (no selection on the test
    fold), their mean and std, also written to ``<out>/folds.json``."""
    finals = []
    for k in range(10):
        fold_cfg = config.replace(fold=k, out=str(Path(config.out) / f"fold-{k}"))
        if config.members > 1:
            summary = run_members(fold_cfg, resume, stop_after, progress)
            metrics = summary["metrics"] if summary else {}
        else:
            metrics = run_split(fold_cfg, resume, stop_after, progress).metrics
        finals.append(metrics.get(config.select_metric, float("nan")))
        print(f"fold {k}: {config.select_metric} = {finals[-1]:.4f}")
    summary = {
        "metric": config.select_metric,
        "folds": finals,
        "mean": statistics.fmean(finals),
        "std": statistics.pstdev(finals),
        "note": "final-step metric on each held-out fold (no selection on the test fold)",
    }
    Path(config.out).mkdir(parents=True, exist_ok=True)
    (Path(config.out) / "folds.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
