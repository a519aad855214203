"""``lrface benchmark``: LFW verification across resolutions, the same pairs with probes found
by MTCNN in the shrunk image, or 1:N identification end to end (the protocols live in
``lrface.eval.benchmark``, ``lrface.eval.detected_verification`` and
``lrface.eval.lfw_identification``)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from lrface.cli.common import (
    DeviceOpt,
    LfwOpt,
    WorkersOpt,
    check_choice,
    fail,
    load_encoder,
    parse_sizes,
    reported,
    run_info,
)
from lrface.constants import DEFAULT_STUDENT

VERIFICATION_SIZES = "8,12,16,20,24,32,full"
IDENTIFICATION_SIZES = "16,24"
DETECTED_SIZES = "8,12,16,20"
DEFAULT_SIZES = {
    "verification": VERIFICATION_SIZES,
    "hr-lr-detected": DETECTED_SIZES,
    "identification": IDENTIFICATION_SIZES,
}
"""Each protocol's sizes, which also names the protocols ``--protocol`` takes."""


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
    lfw: LfwOpt = None,
    view: Annotated[
        str, typer.Option(help="view2 (10 folds), view1 (dev test) or view1-train.")
    ] = "view2",
    sizes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated chip sizes; 'full' = no degradation (default "
            f"{VERIFICATION_SIZES}); hr-lr-detected and identification: face widths (default "
            f"{DETECTED_SIZES} and {IDENTIFICATION_SIZES})."
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
    device: DeviceOpt = "cpu",
    batch_size: Annotated[int, typer.Option(help="Faces per forward pass.")] = 64,
    workers: WorkersOpt = 2,
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
            help="verification (pairs), hr-lr-detected (the same pairs, each LR probe found by "
            "MTCNN in the shrunk whole image and cut as the pipeline cuts it; "
            "eval/detected_verification.py) or identification (1:N, HR gallery of every LFW "
            "person with 2+ images, shrunk raw images as probes, MTCNN; eval/identification.py)."
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
    from lrface.data.degrade import PRESETS

    started = time.perf_counter()  # the wall time reported includes loading the encoders
    check_choice(protocol, tuple(DEFAULT_SIZES), "--protocol")
    check_choice(degradation, tuple(PRESETS), "--degradation")
    identifying = protocol == "identification"
    size_list = parse_sizes(sizes or DEFAULT_SIZES[protocol])
    chosen = parse_folds(folds)
    probes = probe_encoders(Path(encoder), encoder, view, chosen, device, batch_size)
    first = next(iter(probes.values()))
    gallery_name = teacher or first.teacher
    gallery = load_encoder(gallery_name, device, batch_size, "--teacher") if gallery_name else first
    if identifying:
        students = probes if None not in probes else {None: first if first.teacher else None}
        args = (view, size_list, chosen, out, size_cutoff, limit, degradation, started)
        return identification(students, gallery, lfw, *args)
    if protocol == "hr-lr-detected":
        if None not in probes:
            raise fail("--protocol hr-lr-detected: one encoder, not per-fold students")
        args = (view, size_list, chosen, pairs_per_fold, degradation, flip, out, started)
        return detected(first, gallery, baseline, lfw, *args)
    from lrface.eval.benchmark import BenchmarkConfig

    config = BenchmarkConfig(
        view,
        size_list,
        kernel=kernel,
        flip=flip,
        pairs_per_fold=pairs_per_fold,
        cnn_fallback=cnn_fallback,
        degradation=degradation,
    )
    verification(probes, gallery, encoder, lfw, config, chosen, baseline, workers, out, started)


def parse_folds(text: str | None) -> set[int] | None:
    """``"0,1,2"`` -> ``{0, 1, 2}`` (View 2 folds); None stays None (all folds)."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) < 10 for part in parts):
        raise fail(f"--folds: {text!r} is not a comma-separated list of folds 0-9")
    return {int(part) for part in parts}


def probe_encoders(path: Path, name: str, view: str, chosen, device: str, batch_size: int):
    """``{fold: student}`` for a directory of per-fold runs (the chosen folds), else
    ``{None: encoder}``."""
    from lrface.models.checkpoint import fold_runs

    runs, unfinished = fold_runs(path)
    for run in unfinished:
        typer.echo(f"{run}: unfinished, left out", err=True)
    if not runs:
        return {None: load_encoder(name, device, batch_size, "--encoder")}
    if view != "view2":
        raise fail("--view: per-fold students (fold-K/ runs) are tested on view2")
    runs = {k: run for k, run in runs.items() if chosen is None or k in chosen}
    typer.echo(f"per-fold students: folds {sorted(runs)}, each its final checkpoint")
    return {k: load_encoder(str(run), device, batch_size, "--encoder") for k, run in runs.items()}


def chosen_pairs(lfw, view: str, pairs_per_fold: int | None, chosen: set[int] | None):
    """(the LFW dataset, the pairs of ``view`` to score: the first ``pairs_per_fold`` of each
    kind per fold, of the ``chosen`` folds); the one-line exit naming what is wrong."""
    from lrface.data.lfw import LFW
    from lrface.eval.benchmark import limit_pairs
    from lrface.paths import DatasetNotFoundError

    with reported(DatasetNotFoundError, option="--lfw"):
        dataset = LFW(lfw)
    with reported(ValueError, option="--view"):  # an unknown view, or a malformed pair list
        pairs = limit_pairs(dataset.pairs(view), pairs_per_fold)
    return dataset, [p for p in pairs if chosen is None or p.fold in chosen]


def verification(
    probes, gallery, encoder, lfw, config, chosen, baseline, workers, out, started
) -> None:
    """The verification protocol: run, write the outputs, print the tables."""
    from lrface.eval.benchmark import run_verification, write_outputs

    dataset, pairs = chosen_pairs(lfw, config.view, config.pairs_per_fold, chosen)
    per_fold = None not in probes
    if per_fold:
        pairs = [p for p in pairs if p.fold in probes]
    typer.echo(f"LFW {config.view}: {len(pairs)} pairs from {dataset.root}")
    probe = probes if per_fold else probes[None]
    if baseline and probe is not gallery:
        typer.echo(f"baseline: {gallery.name} on the probe side too")
    run = run_verification(dataset, pairs, gallery, probe, config, baseline, workers)
    first = next(iter(probes.values()))
    meta = {
        **run_info(started),
        "encoder_name": encoder if per_fold else first.name,
        "baseline_name": gallery.name,
    }
    paths = write_outputs(out, run.rows, config, run.data, meta, run.baseline_rows)
    stored = not config.flip and not per_fold and config.degradation == "clean"
    if Path(encoder).is_dir() and stored:
        # Stored with the model, for `lrface verify --student` (which embeds without flip).
        shutil.copy(paths["calibration"], Path(encoder) / "calibration.json")
        typer.echo(f"calibration stored with the model: {Path(encoder) / 'calibration.json'}")
    echo_verification(run, meta)
    typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))


def detected(
    probe, gallery, baseline, lfw, view, widths, chosen, pairs_per_fold, preset, flip, out, started
) -> None:
    """``--protocol hr-lr-detected``: the probe encoder (and, with the baseline, the gallery
    encoder on the probe side too) on probes MTCNN found in the shrunk image."""
    import json

    from lrface.eval.benchmark import load_pair_data
    from lrface.eval.detected_verification import detected_report, detected_table

    if None in widths:
        raise fail("--sizes: hr-lr-detected needs face widths in px, not 'full'")
    dataset, pairs = chosen_pairs(lfw, view, pairs_per_fold, chosen)
    typer.echo(f"LFW {view}: {len(pairs)} pairs from {dataset.root}")
    data = load_pair_data(dataset, pairs)
    encoders = {gallery.name: gallery} if baseline and probe is not gallery else {}
    encoders[probe.name] = probe
    report = detected_report(dataset, data, widths, gallery, encoders, preset, flip)
    report |= run_info(started)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"hr-lr-detected-{preset}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(detected_table(report))
    typer.echo(f"wall time {report['wall_time_s']:.1f} s on {report['machine']}")
    typer.echo(f"wrote {path}")


def identification(
    students, gallery, lfw, view, widths, chosen, out, size_cutoff, limit, degradation, started
) -> None:
    """``--protocol identification``: per-fold students probe their folds' people (pooled);
    a single student probes View 1's pairsDevTest people (``--view view1``) or the chosen
    folds' people."""
    from lrface.data.lfw import LFW
    from lrface.eval.identification import markdown_table
    from lrface.eval.lfw_identification import run_identification, write_identification
    from lrface.paths import DatasetNotFoundError

    if None in widths:
        raise fail("--sizes: identification needs face widths in px, not 'full'")
    check_choice(view, ("view1", "view2"), "--view")
    with reported(DatasetNotFoundError, option="--lfw"):
        dataset = LFW(lfw)
    args = (view, chosen, size_cutoff, limit, degradation)
    report = run_identification(
        dataset, gallery, students, widths, *args, log=typer.echo, started=started
    )
    paths = write_identification(report, out)
    typer.echo(markdown_table(report["results"]))
    if report["left_out"]:
        left = len(report["left_out"])
        typer.echo(f"left out {left} people whose gallery photo gives no MTCNN face")
    unreadable = sum(r["detected"]["unreadable"] for r in report["results"].values())
    if unreadable:
        typer.echo(f"skipped {unreadable} unreadable probe images (counted as misses)", err=True)
    typer.echo(f"wall time {report['wall_time_s']:.1f} s on {report['machine']}")
    typer.echo(f"wrote {paths[0]}, {paths[1]}")


def echo_verification(run, meta: dict) -> None:
    """The tables (with the paired gains over the baseline when there is one), the bad input
    and the wall time."""
    from lrface.eval.benchmark import comparison_rows, comparison_table, markdown_table

    if run.baseline_rows:
        compared = comparison_rows(run.baseline_rows, run.rows)
        typer.echo(comparison_table(compared, meta["baseline_name"], meta["encoder_name"]))
        typer.echo(f"\n{meta['baseline_name']} alone:\n{markdown_table(run.baseline_rows)}")
    else:
        typer.echo(markdown_table(run.rows))
    report_bad_input(run.data)
    typer.echo(f"wall time {meta['wall_time_s']:.1f} s on {meta['machine']}")


def report_bad_input(data) -> None:
    """Alignment fallbacks and unusable images of a verification run."""
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
