"""``lrface calibrate-watch``: open-set thresholds for ``lrface watch``'s pooled tracks, set on
synthetic clips of half of LFW View 2's people and measured on the other half
(``lrface.eval.track_openset`` states the protocol), next to the single-face thresholds the
watcher would otherwise use."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from lrface.pipeline_cli import DEFAULT_STUDENT, CutoffOpt, DeviceOpt, StudentOpt, _fail

TEACHER = "dlib-resnet-torch"
SUB_DRAWS = 200
"""Random sub-galleries per search for ``--subgalleries``."""


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list of numbers", param_hint=what) from None


def _single_face(files: list[Path], student: str | None, fpir: float, scoring: str = "raw"):
    """Single-face calibrations set at ``fpir``: the ``--single`` files, then those stored with
    the encoders (raw, and those set on ``scoring``)."""
    from lrface.calibration import Calibration
    from lrface.pipeline import default_calibrations

    calibs = [Calibration.load(path) for path in files]
    calibs += default_calibrations(TEACHER, student, scoring)
    return [c for c in calibs if c.openset and c.openset_fpir == fpir]


def calibrate_watch_command(
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
    lfw: Annotated[
        Path | None, typer.Option(help="LFW root (else $LRFACE_LFW, ../shared/data/lfw).")
    ] = None,
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
    size: set at each --fpir on passers-by of half of LFW View 2's people, FPIR / FNIR measured
    on the other half with these and with the single-face thresholds."""
    from lrface import __version__
    from lrface.calibration import ThresholdBook, track_calibration_target
    from lrface.data.lfw import LFW
    from lrface.eval.track_openset import TrackRecipe
    from lrface.eval.track_openset_lfw import film_tracks, load_filmed, save_filmed
    from lrface.eval.video import Camera
    from lrface.machine import describe_machine
    from lrface.paths import DatasetNotFoundError
    from lrface.pipeline_cli import _pipeline, chosen_student
    from lrface.video.decide import BookThresholds

    student = chosen_student(student)
    normalizer = None
    if scoring != "raw":
        from lrface.pipeline import search_normalizer

        normalizer = search_normalizer(TEACHER, student, scoring)
        if normalizer is None:
            raise typer.BadParameter(
                f"no stored cohort and {scoring} calibration for {TEACHER} or {student}",
                param_hint="--scoring",
            )
    targets = _floats(fpir, "--fpir")
    if not all(0 <= t < 1 for t in targets):
        raise typer.BadParameter("FPIRs must be in [0, 1)", param_hint="--fpir")
    try:
        start_px, end_px = (int(v) for v in shrink.split(","))
        recipe = TrackRecipe(
            people, gallery, passersby, calibration_passersby, frames, start_px, end_px,
            tuple(_floats(bins, "--bins")), Camera.parse(camera), seed=seed,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    sub_sizes = [int(n) for n in _floats(subgalleries, "--subgalleries")] if subgalleries else []
    if any(n < 1 for n in sub_sizes):
        raise typer.BadParameter("sizes must be at least 1", param_hint="--subgalleries")
    if searches is None:
        try:
            dataset = LFW(lfw)
        except DatasetNotFoundError as exc:
            raise typer.BadParameter(str(exc), param_hint="--lfw") from None
    configs = {"teacher": _pipeline(TEACHER, None, "mtcnn", recipe.min_face, None, "all", device)}
    if student:
        configs["teacher+student"] = _pipeline(
            TEACHER, student, "mtcnn", recipe.min_face, size_cutoff, "all", device
        )
    pipe = configs["teacher+student" if student else "teacher"]
    teacher_key = pipe.teacher.cache_key
    # each encoder's thresholds from the configuration it serves in: the teacher alone, and
    # the student's tracks of teacher + student
    owners = {"teacher": (TEACHER, teacher_key)}
    if student:
        owners["teacher+student"] = (student, pipe.student.cache_key)
    scored = {config: (config, "raw") for config in configs}
    if normalizer is not None:  # the same tracks, scored by the normalizer
        for config in configs:
            scored[f"{config} {scoring}"] = (config, scoring)
            owners[f"{config} {scoring}"] = owners[config]
    try:
        singles = {t: _single_face(single or [], student, t, scoring) for t in targets}
    except ValueError as exc:
        raise _fail(str(exc)) from None
    started, cpu = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    if searches is not None:
        try:
            filmed = load_filmed(searches)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        if set(filmed.scores) != set(scored):
            raise _fail(f"{searches}: holds {', '.join(filmed.scores)}, not {', '.join(configs)}")
    else:
        filmed = film_tracks(dataset, configs, recipe, normalizer=normalizer)
        save_filmed(out / "searches.npz", filmed)
    elapsed, cpu = time.time() - started, time.process_time() - cpu
    if any(n > filmed.gallery_size for n in sub_sizes):
        raise _fail(f"--subgalleries must be at most the gallery's {filmed.gallery_size} people")
    recipe_dict = filmed.recipe or recipe.to_dict()
    report = {
        "recipe": recipe_dict,
        "searches": str(searches or out / "searches.npz"),
        "calibrated_on": "size-bin and whole-clip tracks" if whole else "size-bin tracks",
        "student": student,
        "gallery_size": filmed.gallery_size,
        "probes": filmed.probes,
        "calibration_passersby": filmed.calibration_passersby,
        "passersby": filmed.passersby,
        "lrface_version": __version__,
        "machine": describe_machine(),
        "wall_time_s": round(elapsed),
        "cpu_time_s": round(cpu),
        "fpir": {},
    }
    lines = [
        "| encoders | face bin | threshold | value(s) | FPIR achieved (alarms) | FNIR (misses) |",
        "|---|---|---|---|---|---|",
    ]
    sub_lines = [
        "| encoders | gallery | tracks | nominal FPIR | FPIR: whole-gallery / size thresholds "
        "| FNIR: whole-gallery / size thresholds |",
        "|---|---|---|---|---|---|",
    ]
    written: dict[float, list[tuple[str, Path]]] = {}
    for target in targets:
        folder = out / f"fpir-{target:g}"
        files = _track_files(folder, filmed, owners, target, min_tracks, recipe_dict, whole, scored)
        # what --store stores: the thresholds on --scoring's scores
        written[target] = [
            (c.owner, Path(c.path), c.scoring) for c in files if c.scoring == scoring
        ]
        entry = report["fpir"][f"{target:g}"] = {
            "track_calibrations": [c.path for c in files],
            "single_face_calibrations": [c.path for c in singles[target]],
        }
        for config, (pipe_name, how) in scored.items():
            p = configs[pipe_name]
            aliases = {e.cache_key: {e.name} for e in (p.teacher, p.student) if e is not None}
            book = ThresholdBook(files + singles[target], aliases)
            sources = {"track": BookThresholds(book, teacher_key, tracks=True, scoring=how)}
            if any(c.scoring == how for c in singles[target]):
                sources["single-face"] = BookThresholds(book, teacher_key, scoring=how)
            for source, fn in sources.items():
                label = f"{source} @ {target:g}"
                try:
                    rates, rows = _measured(config, label, filmed.scores[config], fn)
                except ValueError as exc:  # no threshold at all for an encoder
                    typer.echo(f"{config}, {label}: {exc}", err=True)
                    continue
                entry[f"{config}/{source}"] = rates
                lines += rows
            if not files:
                continue
            for n in sub_sizes:
                fixed = BookThresholds(book, teacher_key, tracks=True, scoring=how)
                sized = BookThresholds(book, teacher_key, True, n, how)
                rates, rows = _sub_measured(config, n, target, filmed.scores[config], fixed, sized)
                entry[f"{config}/track/gallery-{n}"] = rates
                sub_lines += rows
    if not any(written.values()):
        raise _fail(f"no track thresholds set (fewer than {min_tracks} tracks per size)")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    table = "\n".join(lines)
    if sub_sizes:
        table += (
            "\n\nHalf 1 against random sub-galleries of the gallery's people "
            f"({SUB_DRAWS} per search), judged by the track thresholds for the whole gallery "
            "and for the sub-gallery's size:\n\n" + "\n".join(sub_lines)
        )
    (out / "report.md").write_text(table + "\n")
    typer.echo(table)
    typer.echo(
        f"gallery {filmed.gallery_size} people (half 1); thresholds set on "
        f"{filmed.calibration_passersby} passers-by of half 0, rates on {filmed.probes} probe "
        f"people and {filmed.passersby} passers-by of half 1"
    )
    typer.echo(f"wall time {elapsed:.0f} s, CPU {cpu:.0f} s on {report['machine']}")
    typer.echo(f"wrote {out / 'report.json'}, {out / 'report.md'}")
    for name, path, how in written[targets[0]] if store else []:
        shutil.copyfile(path, track_calibration_target(name, how))
        typer.echo(f"stored {path} as {track_calibration_target(name, how)}")


def _track_files(
    folder: Path,
    filmed,
    owners: dict,
    target: float,
    min_tracks: int,
    recipe: dict,
    whole: bool,
    scored: dict[str, tuple[str, str]],
):
    """Each owner's track calibration at ``target`` (with thresholds by watch-list size), per
    scoring of its searches (``scored``: ``{searches: (configuration, scoring)}``), written into
    ``folder`` and loaded (``owner`` set to the encoder's name); owners with no threshold are
    left out."""
    from lrface.calibration import Calibration
    from lrface.eval.track_openset import calibrate_tracks, calibration_file, threshold_ladder

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    teacher_key = owners["teacher"][1]
    for config, (name, key) in owners.items():
        scores = filmed.scores[config]
        thresholds, counts = calibrate_tracks(scores, target, {key}, min_tracks, whole=whole)
        if key not in thresholds:
            continue
        ladder = threshold_ladder(scores, target, {key}, min_tracks, whole=whole)[key]
        how = scored[config][1]
        data = calibration_file(
            key, teacher_key, thresholds[key], counts[key], target, filmed.gallery_size, recipe,
            ladder, whole, how,
        )  # fmt: skip
        suffix = "" if how == "raw" else f"-{how}"
        path = folder / f"{Path(name).name}-tracks{suffix}.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        files.append(Calibration.load(path))
        files[-1].owner = name
    return files


def _measured(config: str, label: str, scores, fn) -> tuple[dict, list[str]]:
    """Rates per bin of ``scores`` judged by ``fn`` and their table rows (with the thresholds
    each bin's tracks were judged by)."""
    from lrface.eval.track_openset import measure

    rates = measure(scores, fn)
    rows = []
    for name, r in sorted(rates.items(), key=lambda kv: _bin_order(kv[0])):
        used = [] if name == "all" else _choices([s for s in scores if s.bin == name], fn)
        values = ", ".join(f"{c.threshold:.4f}" for c in used) if len(used) < 4 else "various"
        rows.append(
            f"| {config} | {name} | {label} | {values} | {r.fpir:.3f} ({r.alarms}/"
            f"{r.passersby}) | {r.fnir:.3f} ({r.probes - r.found}/{r.probes}) |"
        )
    out = {name: r.to_dict() for name, r in rates.items()}
    out["thresholds"] = sorted({f"{c.source} = {c.threshold:.4f}" for c in _choices(scores, fn)})
    return out, rows


def _sub_measured(config: str, n: int, target: float, scores, fixed, sized):
    """Rates of half 1 against random sub-galleries of ``n`` judged by the ``fixed`` (whole
    gallery) and the ``sized`` (for ``n``) track thresholds, and their table rows."""
    from lrface.eval.track_openset import WHOLE, measure_subgalleries

    # the same draws for both threshold sets (same seed)
    judged = {
        k: measure_subgalleries(scores, fn, n, SUB_DRAWS)
        for k, fn in (("fixed", fixed), ("sized", sized))
    }
    rows, out = [], {}
    for label in ("all", WHOLE):
        a, b = judged["fixed"].get(label), judged["sized"].get(label)
        if a is None or b is None:
            continue
        out[label] = {"whole-gallery": a.to_dict(), "size": b.to_dict()}
        tracks = f"{'size bins' if label == 'all' else label} ({a.passersby} + {a.probes})"
        rows.append(
            f"| {config} | {n} | {tracks} | {target:g} | {a.fpir:.3f} / **{b.fpir:.3f}** | "
            f"{a.fnir:.3f} / {b.fnir:.3f} |"
        )
    return out, rows


def _choices(scores, fn) -> list:
    """The distinct threshold choices ``fn`` makes for these searches, by threshold."""
    seen = {}
    for s in scores:
        if s.probe is not None:
            choice = fn.choice(*s.probe)
            seen[(choice.source, choice.threshold)] = choice
    return sorted(seen.values(), key=lambda c: c.threshold)


def _bin_order(label: str) -> float:
    from lrface.eval.track_openset import WHOLE

    return {"all": 1e9, WHOLE: 2e9}.get(label) or float(label.split("-")[0])
