"""``lrface calibrate-openset`` and ``lrface calibrate-watch``: open-set thresholds for single
faces (``gallery search``) and for ``lrface watch``'s pooled tracks, set on half of LFW View 2's
people and measured on the other half (protocols: ``lrface.eval.openset``,
``lrface.eval.track_openset``; reports: ``lrface.eval.openset_lfw``,
``lrface.eval.calibrate_watch``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from lrface.cli.common import (
    CutoffOpt,
    DeviceOpt,
    LfwOpt,
    StudentOpt,
    WorkersOpt,
    build_pipeline,
    check_choice,
    chosen_student,
    fail,
    load_encoder,
    parse_floats,
    parse_sizes,
    reported,
    run_info,
)
from lrface.constants import DEFAULT_STUDENT, DEFAULT_TEACHER


def calibrate_openset(
    encoder: Annotated[
        str, typer.Option(help="Probe encoder: registered name or student checkpoint dir.")
    ] = DEFAULT_TEACHER,
    lfw: LfwOpt = None,
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
    device: DeviceOpt = "cpu",
    workers: WorkersOpt = 2,
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
    from lrface.eval.openset_lfw import markdown_rows, run_openset, scoring_setup, write_openset

    size_list = parse_sizes(sizes)
    with reported(ValueError, option="--scoring"):
        cohort, own = scoring_setup(encoder, scoring)
    if store and own is None:
        raise fail(f"--store: {encoder!r} has no calibration file to store into")
    probe = load_encoder(encoder, device, option="--encoder")
    gallery = load_encoder(probe.teacher, device, option="--encoder") if probe.teacher else probe
    dataset = open_lfw(lfw)
    started = time.perf_counter()
    rows, split, dropped = run_openset(
        dataset, gallery, probe, size_list, fpir, seed, workers, cohort=cohort, scoring=scoring
    )
    info = run_info(started)
    keys = gallery.cache_key, probe.cache_key
    paths = write_openset(
        out, rows, split, dropped, *keys, fpir, seed, info, own, store, cohort, scoring
    )
    typer.echo(markdown_rows(rows))
    typer.echo(
        f"{len(split.gallery)} enrolled people; threshold set on half of the people, rates on "
        f"the other half; {dropped} images unusable"
    )
    typer.echo(f"wall time {info['wall_time_s']:.1f} s on {info['machine']}")
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


def calibrate_watch(
    student: StudentOpt = DEFAULT_STUDENT,
    size_cutoff: CutoffOpt = None,
    fpir: Annotated[
        str, typer.Option(help="Target FPIRs; each is measured, the first is what --store stores.")
    ] = "0.01,0.1",
    people: Annotated[int, typer.Option(help="Enrolled probe people (half 1).", min=2)] = 40,
    gallery: Annotated[
        int,
        typer.Option(
            help="Gallery size: the probe people plus enrolled people never filmed (0: the "
            "probe people alone).",
            min=0,
        ),
    ] = 0,
    passersby: Annotated[int, typer.Option(help="Passers-by measured (half 1).", min=1)] = 40,
    calibration_passersby: Annotated[
        int, typer.Option(help="Passers-by the thresholds are set on (half 0).", min=1)
    ] = 80,
    frames: Annotated[int, typer.Option(help="Frames per clip.", min=2)] = 32,
    shrink: Annotated[str, typer.Option(help="FROM,TO: face width across each clip.")] = "40,10",
    bins: Annotated[str, typer.Option(help="Face-width bin edges (px).")] = "10,14,20,28,40",
    camera: Annotated[str, typer.Option(help="blur,noise,jpeg (jpeg: none).")] = "3,3,50",
    single: Annotated[
        list[Path] | None,
        typer.Option(help="More single-face calibrations to compare with (repeatable)."),
    ] = None,
    store: Annotated[
        bool,
        typer.Option(
            help="Also store the first FPIR's track calibrations where lrface watch finds them "
            "(packaged models/calibration/<name>-tracks.json, or <checkpoint>/"
            "calibration-tracks.json)."
        ),
    ] = False,
    min_tracks: Annotated[
        int, typer.Option(help="Fewest calibration tracks to set a threshold on.", min=1)
    ] = 10,
    whole: Annotated[
        bool,
        typer.Option(
            help="Set the thresholds on the passers-by's whole-clip tracks as well as on their "
            "size-bin tracks (both are tracks lrface watch may see)."
        ),
    ] = True,
    subgalleries: Annotated[
        str,
        typer.Option(
            help="Also measure half 1 against random sub-galleries of these sizes: thresholds "
            "for that size vs those for the whole gallery."
        ),
    ] = "10,40",
    searches: Annotated[
        Path | None,
        typer.Option(
            help="Set and measure the thresholds from the searches.npz of an earlier run "
            "instead of filming (same --student; the recipe options are then ignored)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the people split and the clips.")] = 0,
    lfw: LfwOpt = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("out/calibrate-watch"),
    device: DeviceOpt = "cpu",
    scoring: Annotated[
        str,
        typer.Option(
            help="Also score the same tracks by this normalization (asnorm: against the "
            "encoders' stored cohorts, as lrface watch searches them) and set and measure "
            "thresholds on those scores too, beside the raw ones; --store then stores those "
            "(<name>-tracks-asnorm.json)."
        ),
    ] = "raw",
) -> None:
    """Open-set thresholds for video tracks (what `lrface watch` judges), per encoder and face
    size, and for long tracks (16 faces or more) where enough whole-clip tracks allow: set at
    each --fpir on passers-by of half of LFW View 2's people, FPIR / FNIR measured on the other
    half with these and with the single-face thresholds."""
    from lrface.calibration import track_calibration_target
    from lrface.eval.calibrate_watch import calibrate_watch as calibrate
    from lrface.eval.calibrate_watch import watch_report

    student = chosen_student(student)
    normalizer = watch_normalizer(student, scoring)
    targets = parse_floats(fpir, "--fpir")
    if not all(0 <= t < 1 for t in targets):
        raise fail("--fpir: FPIRs must be in [0, 1)")
    counts = people, gallery, passersby, calibration_passersby, frames
    recipe = track_recipe(*counts, shrink, bins, camera, seed)
    sub_sizes = (
        [int(n) for n in parse_floats(subgalleries, "--subgalleries")] if subgalleries else []
    )
    if any(n < 1 for n in sub_sizes):
        raise fail("--subgalleries: sizes must be at least 1")
    dataset = None if searches is not None else open_lfw(lfw)
    configs, owners = watch_pipelines(student, size_cutoff, recipe.min_face, device)
    with reported(ValueError):
        singles = {t: single_face(single or [], student, t, scoring) for t in targets}
    started, cpu = time.perf_counter(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    filmed = film_or_load(searches, dataset, configs, recipe, out, scoring, normalizer)
    info, cpu = run_info(started), time.process_time() - cpu
    if any(n > filmed.gallery_size for n in sub_sizes):
        raise fail(f"--subgalleries must be at most the gallery's {filmed.gallery_size} people")
    recipe_dict = filmed.recipe or recipe.to_dict()
    args = (singles, targets, sub_sizes, out, min_tracks, whole, recipe_dict, scoring)
    result = calibrate(filmed, configs, owners, *args)
    for line in result.missing:
        typer.echo(line, err=True)
    if not any(result.written.values()):
        raise fail(f"no track thresholds set (fewer than {min_tracks} tracks per size)")
    searched = searches or out / "searches.npz"
    report = watch_report(filmed, result, student, searched, whole, recipe_dict, info, cpu)
    write_watch_report(report, result.table, filmed, out)
    for name, path in result.written[targets[0]] if store else []:
        target = track_calibration_target(name, scoring)
        shutil.copyfile(path, target)
        typer.echo(f"stored {path} as {target}")


def watch_pipelines(student: str | None, size_cutoff, min_face: float, device: str):
    """The configurations filmed (the teacher alone, and teacher + student) and, per
    configuration, the encoder whose thresholds it sets (name, cache key): the teacher's from
    the teacher alone, the student's from its tracks in teacher + student."""
    configs = {"teacher": build_pipeline(DEFAULT_TEACHER, None, min_face=min_face, device=device)}
    if student:
        configs["teacher+student"] = build_pipeline(
            DEFAULT_TEACHER, student, "mtcnn", min_face, size_cutoff, device=device
        )
    owners = {"teacher": (DEFAULT_TEACHER, configs["teacher"].teacher.cache_key)}
    if student:
        owners["teacher+student"] = (student, configs["teacher+student"].student.cache_key)
    return configs, owners


def track_recipe(
    people, gallery, passersby, calibration_passersby, frames, shrink, bins, camera, seed
):
    """The clips' ``TrackRecipe`` from the options, or the one-line exit naming the problem."""
    from lrface.eval.track_openset import TrackRecipe
    from lrface.eval.video import Camera

    with reported(ValueError):
        start_px, end_px = (int(v) for v in shrink.split(","))
        return TrackRecipe(
            people, gallery, passersby, calibration_passersby, frames, start_px, end_px,
            tuple(parse_floats(bins, "--bins")), Camera.parse(camera), seed=seed,
        )  # fmt: skip


def watch_normalizer(student: str | None, scoring: str):
    """The normalizer ``--scoring`` scores the filmed tracks by (None for raw), or the one-line
    exit naming what is missing."""
    from lrface.pipeline import search_normalizer

    check_choice(scoring, ("raw", "asnorm"), "--scoring")
    if scoring == "raw":
        return None
    normalizer = search_normalizer(DEFAULT_TEACHER, student, scoring)
    if normalizer is None:
        raise fail(
            f"--scoring: no stored cohort and {scoring} calibration for {DEFAULT_TEACHER} "
            f"or {student}"
        )
    return normalizer


def single_face(files: list[Path], student: str | None, fpir: float, scoring: str = "raw"):
    """Single-face calibrations set at ``fpir``: the ``--single`` files, then those stored with
    the encoders (raw, and those set on ``scoring``)."""
    from lrface.calibration import Calibration
    from lrface.pipeline import default_calibrations

    calibs = [Calibration.load(path) for path in files]
    calibs += default_calibrations(DEFAULT_TEACHER, student, scoring)
    return [c for c in calibs if c.openset and c.openset_fpir == fpir]


def open_lfw(lfw: Path | None):
    """The LFW dataset, or the one-line exit saying where it was looked for."""
    from lrface.data.lfw import LFW
    from lrface.paths import DatasetNotFoundError

    with reported(DatasetNotFoundError, option="--lfw"):
        return LFW(lfw)


def film_or_load(
    searches: Path | None, dataset, configs: dict, recipe, out: Path, scoring: str, normalizer
):
    """The searches of an earlier run (``--searches``), or the clips filmed now (saved), with
    the same tracks scored by ``normalizer`` too where ``scoring`` is not raw."""
    from lrface.eval.calibrate_watch import scored_searches
    from lrface.eval.track_openset_lfw import film_tracks, load_filmed, save_filmed

    wanted = scored_searches(configs, scoring)
    if searches is not None:
        with reported(ValueError):
            filmed = load_filmed(searches)
        if not set(wanted) <= set(filmed.scores):
            raise fail(f"{searches}: holds {', '.join(filmed.scores)}, not {', '.join(wanted)}")
        return filmed
    filmed = film_tracks(dataset, configs, recipe, normalizer=normalizer)
    save_filmed(out / "searches.npz", filmed)
    return filmed


def write_watch_report(report: dict, table: str, filmed, out: Path) -> None:
    """report.json and report.md in ``out``, and the table and summary on stdout."""
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(table + "\n")
    typer.echo(table)
    typer.echo(
        f"gallery {filmed.gallery_size} people (half 1); thresholds set on "
        f"{filmed.calibration_passersby} passers-by of half 0, rates on {filmed.probes} probe "
        f"people and {filmed.passersby} passers-by of half 1"
    )
    typer.echo(
        f"wall time {report['wall_time_s']:.0f} s, CPU {report['cpu_time_s']:.0f} s on "
        f"{report['machine']}"
    )
    typer.echo(f"wrote {out / 'report.json'}, {out / 'report.md'}")


def build_cohort(
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
    from lrface.eval.cohort import build_cohort as build
    from lrface.models.factory import create_encoder
    from lrface.paths import DatasetNotFoundError, file_digest
    from lrface.search.cohort import COHORT_DIR, write_cohort

    try:
        probe = create_encoder(encoder)
        gallery = create_encoder(probe.teacher) if probe.teacher else probe
        dataset = LFW(lfw)
    except (KeyError, FileNotFoundError, ValueError, DatasetNotFoundError) as exc:
        raise typer.BadParameter(str(exc).strip('"')) from None
    started = time.perf_counter()
    cohort = build(
        dataset, gallery, probe, encoder, None if utkface is None else str(utkface), faces,
        tuple(parse_sizes(bands)), seed, workers=workers,
    )  # fmt: skip
    target = write_cohort(cohort, out or COHORT_DIR / f"{encoder}.safetensors")
    typer.echo(json.dumps(cohort.info, indent=2))
    typer.echo(f"{time.perf_counter() - started:.1f} s; wrote {target}")
    pin = "" if Path(encoder).is_dir() else f' (MANIFEST["{encoder}"])'
    typer.echo(f"sha256{pin}: {file_digest(target)}")
