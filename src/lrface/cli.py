"""The ``lrface`` command line: benchmark, train, detect, verify, gallery, watch."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from lrface import __version__
from lrface.machine import describe_machine
from lrface.models.pretrained import DEFAULT_STUDENT

app = typer.Typer(
    help="Low-resolution face recognition by transfer from a high-resolution teacher.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

DEFAULT_TEACHER = "dlib-resnet-torch"
VERIFICATION_SIZES = "8,12,16,20,24,32,full"
IDENTIFICATION_SIZES = "16,24"


def parse_sizes(text: str) -> list[int | None]:
    """``"8,12,full"`` -> ``[8, 12, None]``."""
    sizes: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("full", "hr"):
            sizes.append(None)
        elif part.isdigit() and int(part) >= 4:
            sizes.append(int(part))
        else:
            raise typer.BadParameter(f"size {part!r} is not an integer >= 4 or 'full'")
    return sizes


@app.command()
def benchmark(
    encoder: Annotated[
        str,
        typer.Option(
            help="Probe encoder: a registered name (the shipped student, the teacher) or a "
            "trained student checkpoint dir (a run dir loads its final checkpoint; RUN/best the "
            "one selected on the eval pairs)."
        ),
    ] = DEFAULT_STUDENT,
    teacher: Annotated[
        str | None,
        typer.Option(help="Gallery encoder for a student (default: the student's own teacher)."),
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            help="Also score the gallery encoder on the probe side (same pairs) and report the "
            "student's paired per-fold gain over it."
        ),
    ] = True,
    lfw: Annotated[
        Path | None, typer.Option(help="LFW root (else $LRFACE_LFW, ../shared/data/lfw).")
    ] = None,
    view: Annotated[
        str, typer.Option(help="view2 (10 folds), view1 (dev test) or view1-train.")
    ] = "view2",
    sizes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated chip sizes; 'full' = no degradation (default "
            f"{VERIFICATION_SIZES}); identification: face widths (default {IDENTIFICATION_SIZES})."
        ),
    ] = None,
    degradation: Annotated[
        str,
        typer.Option(
            help="Probe condition: clean (area downsampling), cctv (blur, noise, JPEG, "
            "gamma) or ir (grey-scale, one-sided light); see lrface.data.degrade.PRESETS."
        ),
    ] = "clean",
    kernel: Annotated[
        str, typer.Option(help="Downsampling kernel: area, bicubic, bilinear, lanczos, nearest.")
    ] = "area",
    flip: Annotated[
        bool,
        typer.Option(
            help="Average each embedding with the mirrored face's (off by default: the "
            "deployed commands embed one view)."
        ),
    ] = False,
    pairs_per_fold: Annotated[
        int | None, typer.Option(help="Quick run: first N same + N different pairs per fold.")
    ] = None,
    folds: Annotated[
        str | None, typer.Option(help="Only these View 2 folds, e.g. '0,1,2' (default: all).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("out/benchmark"),
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Faces per forward pass.")] = 64,
    workers: Annotated[int, typer.Option(help="Processes for face alignment.")] = 2,
    cnn_fallback: Annotated[
        bool,
        typer.Option(
            help="Where dlib's frontal detector finds no face, try its CNN detector before "
            "the centre box (slower; a new chip cache)."
        ),
    ] = False,
    protocol: Annotated[
        str,
        typer.Option(
            help="verification (pairs) or identification (1:N, HR gallery of every LFW person "
            "with 2+ images, shrunk raw images as probes, MTCNN; eval/identification.py)."
        ),
    ] = "verification",
    size_cutoff: Annotated[
        float | None,
        typer.Option(
            help="Identification: faces narrower (px) go to the student (default: the "
            "student's own cutoff)."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Identification quick run: the first N people.")
    ] = None,
) -> None:
    """Verification accuracy on LFW across resolutions: HR-HR, HR gallery vs LR probe, LR-LR;
    or, with ``--protocol identification``, end-to-end 1:N search with low-resolution probes.

    By default the shipped student against its teacher on View 2: the teacher's HR gallery,
    probes at 8-32 px embedded by the student and, as the baseline, by the teacher itself.
    """
    if protocol == "identification":
        from lrface.data.degrade import PRESETS

        if degradation not in PRESETS:
            raise typer.BadParameter(
                f"{degradation!r}; choose one of {', '.join(PRESETS)}", param_hint="--degradation"
            )
        _identification(
            encoder,
            teacher,
            lfw,
            view,
            sizes,
            folds,
            out,
            device,
            batch_size,
            size_cutoff,
            limit,
            degradation,
        )
        return
    if protocol != "verification":
        raise typer.BadParameter(f"unknown protocol {protocol!r}", param_hint="--protocol")
    from lrface.data.degrade import PRESETS
    from lrface.data.lfw import LFW
    from lrface.detect.dlib_align import AlignSettings
    from lrface.eval.benchmark import (
        BenchmarkConfig,
        comparison_rows,
        comparison_table,
        evaluate,
        limit_pairs,
        load_pair_data,
        markdown_table,
        write_outputs,
    )
    from lrface.models.registry import create_encoder
    from lrface.paths import DatasetNotFoundError

    started = time.perf_counter()
    # every argument is checked before the alignment stage (minutes on a cold cache)
    if degradation not in PRESETS:
        raise typer.BadParameter(
            f"{degradation!r}; choose one of {', '.join(PRESETS)}", param_hint="--degradation"
        )
    size_list = parse_sizes(sizes or VERIFICATION_SIZES)
    config = BenchmarkConfig(
        view=view,
        sizes=size_list,
        kernel=kernel,
        flip=flip,
        pairs_per_fold=pairs_per_fold,
        cnn_fallback=cnn_fallback,
        degradation=degradation,
    )
    chosen = parse_folds(folds)
    fold_runs = per_fold_runs(Path(encoder))
    if fold_runs and view != "view2":
        raise typer.BadParameter("per-fold students (fold-K/ runs) are tested on view2")
    try:
        if fold_runs:
            probe_encoder = {
                k: create_encoder(str(path), batch_size=batch_size, device=device)
                for k, path in fold_runs.items()
            }
            first_probe = next(iter(probe_encoder.values()))
        else:
            probe_encoder = first_probe = create_encoder(
                encoder, batch_size=batch_size, device=device
            )
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc).strip('"'), param_hint="--encoder") from None
    gallery_name = teacher or first_probe.teacher
    try:
        gallery_encoder = (
            create_encoder(gallery_name, batch_size=batch_size, device=device)
            if gallery_name
            else first_probe
        )
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc).strip('"'), param_hint="--teacher") from None
    try:
        dataset = LFW(lfw)
        pairs = limit_pairs(dataset.pairs(view), pairs_per_fold)
    except DatasetNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lfw") from None
    except ValueError as exc:  # an unknown view, or a malformed pair list
        raise typer.BadParameter(str(exc), param_hint="--view") from None
    if chosen is not None:
        pairs = [p for p in pairs if p.fold in chosen]
    if fold_runs:
        pairs = [p for p in pairs if p.fold in fold_runs]
        typer.echo(f"per-fold students: folds {sorted(fold_runs)}, each its final checkpoint")
    compare = baseline and gallery_encoder is not first_probe
    typer.echo(f"LFW {view}: {len(pairs)} pairs from {dataset.root}")
    align = AlignSettings(cnn_fallback=cnn_fallback)
    data = load_pair_data(dataset, pairs, workers=workers, settings=align)
    baseline_rows = None
    if compare:  # the student is routed to small faces: full size is the baseline's HR-HR row
        typer.echo(f"baseline: {gallery_encoder.name} on the probe side too")
        baseline_rows = evaluate(data, gallery_encoder, gallery_encoder, config)
    low_sizes = [s for s in size_list if s is not None]
    probe_config = dataclasses.replace(config, sizes=low_sizes) if compare else config
    rows = evaluate(data, gallery_encoder, probe_encoder, probe_config)
    elapsed = time.perf_counter() - started
    meta = {
        "lrface_version": __version__,
        "machine": describe_machine(),
        "wall_time_s": round(elapsed, 1),
        "encoder_name": encoder if fold_runs else first_probe.name,
        "baseline_name": gallery_encoder.name,
    }
    paths = write_outputs(out, rows, config, data, meta, baseline_rows)
    if Path(encoder).is_dir() and not flip and not fold_runs and degradation == "clean":
        # Stored with the model, for `lrface verify --student` (which embeds without flip).
        shutil.copy(paths["calibration"], Path(encoder) / "calibration.json")
        typer.echo(f"calibration stored with the model: {Path(encoder) / 'calibration.json'}")
    if baseline_rows:
        compared = comparison_rows(baseline_rows, rows)
        typer.echo(comparison_table(compared, meta["baseline_name"], meta["encoder_name"]))
        typer.echo("")
        typer.echo(f"{gallery_encoder.name} alone:")
        typer.echo(markdown_table(baseline_rows))
    else:
        typer.echo(markdown_table(rows))
    _report_bad_input(data)
    typer.echo(f"wall time {elapsed:.1f} s on {meta['machine']}")
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@app.command("calibrate-openset")
def calibrate_openset(
    encoder: Annotated[
        str, typer.Option(help="Probe encoder: registered name or student checkpoint dir.")
    ] = DEFAULT_TEACHER,
    lfw: Annotated[
        Path | None, typer.Option(help="LFW root (else $LRFACE_LFW, ../shared/data/lfw).")
    ] = None,
    sizes: Annotated[
        str, typer.Option(help="Probe sizes; 'full' = no degradation.")
    ] = "16,24,full",
    fpir: Annotated[
        float, typer.Option(help="Target false-positive identification rate.", min=0, max=0.5)
    ] = 0.01,
    seed: Annotated[int, typer.Option(help="Seed of the enrolled / stranger split.")] = 0,
    store: Annotated[
        bool,
        typer.Option(
            help="Write the thresholds into the encoder's own calibration file (the packaged "
            "one, or <checkpoint>/calibration.json) instead of <out>/calibration.json."
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("out/openset"),
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    workers: Annotated[int, typer.Option(help="Processes for face alignment.")] = 2,
    scoring: Annotated[
        str,
        typer.Option(
            help="Scores the thresholds apply to: raw (cosine) or asnorm (normalized against "
            "the encoder's stored cohort, `lrface build-cohort`; stored beside the raw file)."
        ),
    ] = "raw",
) -> None:
    """Open-set thresholds ("unknown" for `lrface gallery search`) on LFW View 2's people.

    Half of the people with two or more photos are enrolled (one photo each), the rest are
    strangers; probes are degraded to each size. The threshold is set at --fpir on half of the
    people and FPIR / FNIR are reported on the other half (src/lrface/eval/openset.py).
    """
    from lrface.calibration import calibration_path, scoring_calibration_target
    from lrface.data.lfw import LFW
    from lrface.eval.openset_lfw import markdown_rows, openset_entries, run_openset
    from lrface.models.registry import create_encoder
    from lrface.paths import DatasetNotFoundError
    from lrface.search.cohort import stored_cohort
    from lrface.search.normalize import DEFAULT_TOP_K, STAT_METHODS

    size_list = parse_sizes(sizes)
    own = calibration_path(encoder)
    cohort = None
    if scoring != "raw":
        if scoring not in STAT_METHODS:
            choices = ", ".join(("raw", *STAT_METHODS))
            raise typer.BadParameter(f"one of {choices}", param_hint="--scoring")
        cohort = stored_cohort(encoder)
        if cohort is None:
            raise typer.BadParameter(
                f"{encoder!r} has no stored cohort; build one with `lrface build-cohort`",
                param_hint="--scoring",
            )
        own = scoring_calibration_target(encoder, scoring)
    elif store and own is None:
        raise typer.BadParameter(
            f"{encoder!r} has no calibration file to store into", param_hint="--store"
        )
    try:
        probe = create_encoder(encoder, device=device)
        gallery = create_encoder(probe.teacher, device=device) if probe.teacher else probe
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc).strip('"'), param_hint="--encoder") from None
    try:
        dataset = LFW(lfw)
    except DatasetNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lfw") from None
    started = time.perf_counter()
    rows, split, dropped = run_openset(
        dataset, gallery, probe, size_list, fpir, seed, workers, cohort=cohort, scoring=scoring
    )
    elapsed = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "encoder": probe.cache_key,
        "gallery_encoder": gallery.cache_key,
        "seed": seed,
        "enrolled": len(split.gallery),
        "images_dropped": dropped,
        "lrface_version": __version__,
        "machine": describe_machine(),
        "wall_time_s": round(elapsed, 1),
        "rows": [r.to_dict() for r in rows],
    }
    (out / "openset.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown_rows(rows)
    (out / "openset.md").write_text(table + "\n")
    target = own if store else out / "calibration.json"
    calib = (
        json.loads(own.read_text())
        if own is not None and own.is_file()
        else {"gallery_encoder": gallery.cache_key, "probe_encoder": probe.cache_key, "flip": False}
    )
    calib |= {"openset": openset_entries(rows), "openset_fpir": fpir}
    if cohort is not None:
        calib |= {
            "scoring": scoring,
            "cohort": f"{cohort.encoder}@{cohort.digest}",
            "top_k": DEFAULT_TOP_K,
            "gallery_size": len(split.gallery),
        }
    target.write_text(json.dumps(calib, indent=2) + "\n")
    typer.echo(table)
    typer.echo(
        f"{len(split.gallery)} enrolled people; threshold set on half of the people, rates on "
        f"the other half; {dropped} images unusable"
    )
    typer.echo(f"wall time {elapsed:.1f} s on {summary['machine']}")
    typer.echo(f"wrote {out / 'openset.json'}, {out / 'openset.md'}, {target}")


@app.command("build-cohort")
def build_cohort_command(
    encoder: Annotated[
        str, typer.Option(help="Probe encoder whose cohort to build (a shipped name).")
    ] = DEFAULT_STUDENT,
    bands: Annotated[
        str, typer.Option(help="Probe sizes to embed the cohort at; 'full' = no degradation.")
    ] = "8,12,16,20",
    faces: Annotated[int, typer.Option(help="Cohort faces.", min=100)] = 4000,
    seed: Annotated[int, typer.Option(help="Seed of the UTKFace sample.")] = 0,
    lfw: Annotated[Path | None, typer.Option(help="LFW root.")] = None,
    utkface: Annotated[Path | None, typer.Option(help="UTKFace root.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output file (default: the packaged cohorts/<encoder>.safetensors)."),
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes for face alignment.")] = 1,
) -> None:
    """The score-normalization cohort of an encoder: faces of nobody in LFW View 2 (one photo of
    each LFW person in no View 2 pair, then seeded UTKFace minus its LFW matches), embedded by
    the teacher at full size and by the encoder at each band (src/lrface/eval/cohort.py).
    Prints the sha256 to pin in lrface.search.cohort.MANIFEST."""
    from lrface.data.lfw import LFW
    from lrface.eval.cohort import build_cohort
    from lrface.models.registry import create_encoder
    from lrface.paths import DatasetNotFoundError, file_digest
    from lrface.search.cohort import COHORT_DIR, write_cohort

    try:
        probe = create_encoder(encoder)
        gallery = create_encoder(probe.teacher) if probe.teacher else probe
        dataset = LFW(lfw)
    except (KeyError, FileNotFoundError, ValueError, DatasetNotFoundError) as exc:
        raise typer.BadParameter(str(exc).strip('"')) from None
    started = time.perf_counter()
    cohort = build_cohort(
        dataset, gallery, probe, encoder, None if utkface is None else str(utkface), faces,
        tuple(parse_sizes(bands)), seed, workers=workers,
    )  # fmt: skip
    target = write_cohort(cohort, out or COHORT_DIR / f"{encoder}.safetensors")
    typer.echo(json.dumps(cohort.info, indent=2))
    typer.echo(f"{time.perf_counter() - started:.1f} s; wrote {target}")
    pin = "" if Path(encoder).is_dir() else f' (MANIFEST["{encoder}"])'
    typer.echo(f"sha256{pin}: {file_digest(target)}")


def parse_folds(text: str | None) -> set[int] | None:
    """``"0,1,2"`` -> ``{0, 1, 2}`` (View 2 folds); None stays None (all folds)."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) < 10 for part in parts):
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of folds 0-9")
    return {int(part) for part in parts}


def per_fold_runs(path: Path) -> dict[int, Path]:
    """``{k: final checkpoint}`` for a directory of finished ``fold-K/`` training runs (or
    ``fold-K/`` ensembles of ``member-J/`` runs).

    The final checkpoint, not ``best/`` (best is selected on the held-out fold itself); a run
    whose last checkpoint is not at its configured step count is unfinished and left out.
    """
    from lrface.models.checkpoint import finished_checkpoint, latest_checkpoint, member_runs

    runs = {}
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
        elif (last := latest_checkpoint(run)) is not None:
            typer.echo(f"{run}: unfinished ({last.name}), left out", err=True)
    return runs


def _identification(
    encoder: str,
    teacher: str | None,
    lfw: Path | None,
    view: str,
    sizes: str | None,
    folds: str | None,
    out: Path,
    device: str,
    batch_size: int,
    size_cutoff: float | None,
    limit: int | None,
    degradation: str,
) -> None:
    """``lrface benchmark --protocol identification``: a directory of ``fold-K/`` runs probes
    each View 2 fold's people with its own student and pools the folds; a single student on
    View 1 probes pairsDevTest's people; ``--folds`` picks the View 2 folds probed; probes
    through camera preset ``degradation``."""
    from lrface.data.lfw import LFW, fold_people
    from lrface.eval.identification import benchmark_people, markdown_table, pool_folds
    from lrface.eval.lfw_identification import enroll, identify
    from lrface.models.registry import create_encoder
    from lrface.pipeline import routing_cutoff

    started = time.perf_counter()
    widths = parse_sizes(sizes or IDENTIFICATION_SIZES)
    if None in widths:
        raise typer.BadParameter("identification needs face widths in px, not 'full'")
    if view not in ("view1", "view2"):
        raise typer.BadParameter("identification probes view1 (pairsDevTest) or view2 people")
    dataset = LFW(lfw)
    chosen = None if folds is None else {int(k) for k in folds.split(",")}
    fold_runs = per_fold_runs(Path(encoder))

    def load(name: str):
        try:
            return create_encoder(name, batch_size=batch_size, device=device)
        except (KeyError, FileNotFoundError) as exc:
            raise typer.BadParameter(str(exc).strip('"'), param_hint="--encoder") from None

    if fold_runs:
        if view != "view2":
            raise typer.BadParameter("per-fold students (fold-K/ runs) are tested on view2")
        fold_runs = {k: v for k, v in fold_runs.items() if chosen is None or k in chosen}
        students = {k: load(str(path)) for k, path in fold_runs.items()}
        typer.echo(f"per-fold students: folds {sorted(students)}, each its final checkpoint")
        gallery_encoder = load(teacher or next(iter(students.values())).teacher)
    else:
        probe = load(encoder)
        students = {None: probe if probe.teacher else None}
        gallery_encoder = load(teacher or probe.teacher) if probe.teacher else probe
    people = benchmark_people(((i.identity, i.relpath) for i in dataset.images()), limit)
    gallery, left_out = enroll(dataset, people, gallery_encoder)
    people = [p for p in people if p.name not in left_out]
    by_fold = fold_people(dataset.view2())
    runs = {}
    for fold, student in students.items():
        if fold is not None:
            wanted = by_fold[fold]
        elif view == "view1":
            wanted = {name for pair in dataset.view1_test() for name in pair.people}
        elif chosen is not None:
            wanted = set().union(*(by_fold[k] for k in chosen))
        else:
            wanted = None
        probes = [p for p in people if wanted is None or p.name in wanted]
        label = "all" if fold is None else f"fold-{fold}"
        typer.echo(f"{label}: {len(probes)} probes against {len(people)} people")
        runs[label] = identify(
            dataset,
            probes,
            widths,
            gallery,
            gallery_encoder,
            student,
            size_cutoff,
            preset=degradation,
        )
    results = pool_folds(list(runs.values())) if len(runs) > 1 else next(iter(runs.values()))
    elapsed = time.perf_counter() - started
    report = {
        "lrface_version": __version__,
        "lfw": str(dataset.root),
        "view": view,
        "people": len(people),
        "left_out": left_out,
        "teacher": gallery_encoder.cache_key,
        "students": {
            "all" if k is None else f"fold-{k}": s.cache_key
            for k, s in students.items()
            if s is not None
        },
        "size_cutoff": {
            "all" if k is None else f"fold-{k}": routing_cutoff(s, size_cutoff)
            for k, s in students.items()
            if s is not None
        },
        "degradation": degradation,
        "limit": limit,
        "runs": runs,
        "results": results,
        "machine": describe_machine(),
        "wall_time_s": round(elapsed, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    (out / "identification.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "identification.md").write_text(table + "\n")
    typer.echo(table)
    if left_out:
        typer.echo(f"left out {len(left_out)} people whose gallery photo gives no MTCNN face")
    unreadable = sum(r["detected"]["unreadable"] for r in results.values())
    if unreadable:
        typer.echo(f"skipped {unreadable} unreadable probe images (counted as misses)", err=True)
    typer.echo(f"wall time {elapsed:.1f} s on {report['machine']}")
    typer.echo(f"wrote {out / 'identification.json'}, {out / 'identification.md'}")


def _report_bad_input(data) -> None:
    if data.fallbacks:
        typer.echo(f"alignment: no face detected in {data.fallbacks} images; used the centre box")
    if data.failures:
        typer.echo(
            f"skipped {len(data.failures)} unusable images and {data.skipped_pairs} pairs "
            "that use them:",
            err=True,
        )
        for reason in sorted(data.failures.values())[:20]:
            typer.echo(f"  {reason}", err=True)
        if len(data.failures) > 20:
            typer.echo(f"  ... and {len(data.failures) - 20} more (see results.json)", err=True)


def _register_subcommands() -> None:
    """Commands implemented next to their subsystems."""
    from lrface.calibrate_watch_cli import calibrate_watch_command
    from lrface.pipeline_cli import (
        detect_command,
        fetch_weights_command,
        gallery_app,
        verify_command,
    )
    from lrface.service.cli import serve_command
    from lrface.train.cli import (
        decontaminate_command,
        package_student_command,
        train_command,
    )
    from lrface.video_cli import watch_command

    app.command("train")(train_command)
    app.command("decontaminate")(decontaminate_command)
    app.command("package-student")(package_student_command)
    app.command("detect")(detect_command)
    app.command("verify")(verify_command)
    app.command("fetch-weights")(fetch_weights_command)
    app.add_typer(gallery_app, name="gallery")
    app.command("watch")(watch_command)
    app.command("calibrate-watch")(calibrate_watch_command)
    app.command("serve")(serve_command)


_register_subcommands()


@app.command()
def encoders() -> None:
    """List the registered encoders."""
    from lrface.models.registry import list_encoders

    typer.echo(json.dumps(list_encoders()))


@app.command()
def export(
    encoder: Annotated[
        str,
        typer.Argument(help="PyTorch encoder name or a trained student checkpoint dir."),
    ],
    out: Annotated[Path, typer.Option(help="ONNX file to write (a .json beside it describes it).")],
    check: Annotated[
        int, typer.Option(help="Random faces to compare ONNX Runtime with PyTorch on (0: skip).")
    ] = 8,
) -> None:
    """Export an encoder to ONNX for deployment, with a parity check against PyTorch.

    The graph takes float RGB ``N x 3 x S x S`` in [0, 255] (input ``chips``, S = the encoder's
    input size, any batch) and returns raw ``N x D`` embeddings (output ``embedding``;
    L2-normalize them before cosine scoring).
    """
    import numpy as np

    from lrface.models.encoder import TorchEncoder
    from lrface.models.export import export_onnx, onnx_max_abs_diff
    from lrface.models.registry import create_encoder

    try:
        model = create_encoder(encoder)
    except (KeyError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="ENCODER") from None
    if not isinstance(model, TorchEncoder):
        raise typer.BadParameter(
            f"{encoder!r} is not a PyTorch encoder; export 'dlib-resnet-torch' (the same "
            "network) or a student checkpoint",
            param_hint="ENCODER",
        )
    path = export_onnx(model.module, out, input_size=model.input_size)
    info = {
        "source": encoder,
        "encoder": model.name,
        "input": "chips: float32 RGB N x 3 x S x S in [0, 255]",
        "input_size": model.input_size,
        "output": "embedding: float32 N x D, not normalized",
        "dim": model.dim,
        "cache_key": model.cache_key,
    }
    if check:
        side = model.input_size
        faces = np.random.default_rng(0).uniform(0, 255, (check, 3, side, side))
        info["max_abs_diff_vs_torch"] = diff = onnx_max_abs_diff(path, model.module, faces)
        if diff > 1e-3:
            path.unlink()
            raise typer.BadParameter(
                f"{path}: ONNX Runtime differs from PyTorch by up to {diff:.2e}; not usable, "
                "so the file was removed",
                param_hint="ENCODER",
            )
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    typer.echo(json.dumps({"onnx": str(path), **info}, indent=2))


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Low-resolution face recognition by transfer from a high-resolution teacher."""


if __name__ == "__main__":
    app()
