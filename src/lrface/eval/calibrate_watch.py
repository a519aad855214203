"""The calibrate-watch report (``lrface calibrate-watch``): track thresholds set at each target
FPIR on the calibration passers-by of filmed LFW clips (``track_openset_lfw.film_tracks``),
written as calibration files, and measured on the other half of the people, against the whole
gallery and random sub-galleries, next to the single-face thresholds (protocol:
``lrface.eval.track_openset``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lrface.calibration import Calibration, ThresholdBook
from lrface.eval.track_openset import (
    WHOLE,
    calibrate_tracks,
    calibration_file,
    measure,
    measure_subgalleries,
    search_faces,
    threshold_ladder,
)
from lrface.video.decide import BookThresholds

SUB_DRAWS = 200
"""Random sub-galleries per search for ``--subgalleries``."""


@dataclass
class WatchCalibration:
    """The report's per-FPIR entries (rates, files), its markdown tables, the track
    calibration files written per target FPIR (owner name, path) and the measurements that
    could not be made (no threshold for an encoder)."""

    fpir: dict = field(default_factory=dict)
    table: str = ""
    written: dict[float, list[tuple[str, Path]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def calibrate_watch(
    filmed,
    configs: dict,
    owners: dict[str, tuple[str, str]],
    singles: dict[float, list[Calibration]],
    targets: list[float],
    sub_sizes: list[int],
    out: Path,
    min_tracks: int = 10,
    whole: bool = True,
    recipe: dict | None = None,
    scoring: str = "raw",
) -> WatchCalibration:
    """Set and measure the track thresholds of ``filmed`` searches: ``configs`` maps each
    configuration (``teacher``, ``teacher+student``) to its pipeline, ``owners`` to the
    (encoder name, cache key) whose thresholds it sets; ``singles`` are the single-face
    calibrations compared at each target. Files go to ``out/fpir-<target>/``. With a
    ``scoring`` other than raw, ``filmed`` also holds the same tracks scored that way
    (``scored_searches``) and their thresholds are set and measured beside the raw ones;
    ``written`` then lists those (what ``--store`` stores)."""
    teacher_key = owners["teacher"][1]
    scored = scored_searches(configs, scoring)
    owners = {searches: owners[config] for searches, (config, _) in scored.items()}
    result = WatchCalibration()
    written = result.written
    recipe_dict = recipe or {}
    lines = [
        "| encoders | face bin | threshold | value(s) | FPIR achieved (alarms) | FNIR (misses) |",
        "|---|---|---|---|---|---|",
    ]
    sub_lines = [
        "| encoders | gallery | tracks | nominal FPIR | FPIR: whole-gallery / size thresholds "
        "| FNIR: whole-gallery / size thresholds |",
        "|---|---|---|---|---|---|",
    ]
    for target in targets:
        folder = out / f"fpir-{target:g}"
        files = track_files(folder, filmed, owners, target, min_tracks, recipe_dict, whole, scored)
        written[target] = [(c.owner, Path(c.path)) for c in files if c.scoring == scoring]
        entry = result.fpir[f"{target:g}"] = {
            "track_calibrations": [c.path for c in files],
            "single_face_calibrations": [c.path for c in singles[target]],
        }
        for config, (pipeline, how) in scored.items():
            p = configs[pipeline]
            aliases = {e.cache_key: {e.name} for e in (p.teacher, p.student) if e is not None}
            book = ThresholdBook(files + singles[target], aliases)
            sources = {"track": BookThresholds(book, teacher_key, tracks=True, scoring=how)}
            if any(c.scoring == how for c in singles[target]):
                sources["single-face"] = BookThresholds(book, teacher_key, scoring=how)
            for source, fn in sources.items():
                label = f"{source} @ {target:g}"
                try:
                    rates, rows = measured(config, label, filmed.scores[config], fn)
                except ValueError as exc:  # no threshold at all for an encoder
                    result.missing.append(f"{config}, {label}: {exc}")
                    continue
                entry[f"{config}/{source}"] = rates
                lines += rows
            if not files:
                continue
            for n in sub_sizes:
                fixed = BookThresholds(book, teacher_key, tracks=True, scoring=how)
                sized = BookThresholds(book, teacher_key, True, n, how)
                rates, rows = sub_measured(config, n, target, filmed.scores[config], fixed, sized)
                entry[f"{config}/track/gallery-{n}"] = rates
                sub_lines += rows
    table = "\n".join(lines)
    if sub_sizes:
        table += (
            "\n\nHalf 1 against random sub-galleries of the gallery's people "
            f"({SUB_DRAWS} per search), judged by the track thresholds for the whole gallery "
            "and for the sub-gallery's size:\n\n" + "\n".join(sub_lines)
        )
    result.table = table
    return result


def watch_report(
    filmed, result: WatchCalibration, student, searches, whole, recipe, info: dict, cpu: float
) -> dict:
    """report.json's content: the recipe, who was filmed, the run (``info``: version, machine,
    wall time; ``cpu`` seconds) and the rates per target FPIR."""
    return {
        "recipe": recipe,
        "searches": str(searches),
        "calibrated_on": "size-bin and whole-clip tracks" if whole else "size-bin tracks",
        "student": student,
        "gallery_size": filmed.gallery_size,
        "probes": filmed.probes,
        "calibration_passersby": filmed.calibration_passersby,
        "passersby": filmed.passersby,
        **info,
        "wall_time_s": round(info["wall_time_s"]),
        "cpu_time_s": round(cpu),
        "fpir": result.fpir,
    }


def scored_searches(configs: dict, scoring: str = "raw") -> dict[str, tuple[str, str]]:
    """``{searches: (configuration, scoring)}``: each configuration's raw searches and, unless
    ``scoring`` is raw, the same tracks scored that way under ``"<configuration> <scoring>"``
    (as ``track_openset_lfw.film_tracks`` names them)."""
    scored = {config: (config, "raw") for config in configs}
    if scoring != "raw":
        scored |= {f"{config} {scoring}": (config, scoring) for config in configs}
    return scored


def track_files(
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
    scoring of its searches (``scored_searches``), written into ``folder`` and loaded
    (``owner`` set to the encoder's name); owners with no threshold are left out."""

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    teacher_key = owners["teacher"][1]
    for config, (name, key) in owners.items():
        scores = filmed.scores[config]
        thresholds, counts = calibrate_tracks(scores, target, {key}, min_tracks, whole=whole)
        if key not in thresholds:
            continue
        ladder = threshold_ladder(scores, target, {key}, min_tracks, whole=whole)[key]
        long, long_counts = calibrate_tracks(scores, target, {key}, min_tracks, long=True)
        long_ladder = threshold_ladder(scores, target, {key}, min_tracks, long=True).get(key, {})
        how = scored[config][1]
        long_tables = (long.get(key, {}), long_counts.get(key, {}), long_ladder)
        data = calibration_file(
            key, teacher_key, thresholds[key], counts[key], target, filmed.gallery_size, recipe,
            ladder, whole, how, long_tables,
        )  # fmt: skip
        suffix = "" if how == "raw" else f"-{how}"
        path = folder / f"{Path(name).name}-tracks{suffix}.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        files.append(Calibration.load(path))
        files[-1].owner = name
    return files


def measured(config: str, label: str, scores, fn) -> tuple[dict, list[str]]:
    """Rates per bin of ``scores`` judged by ``fn`` and their table rows (with the thresholds
    each bin's tracks were judged by)."""

    rates = measure(scores, fn)
    rows = []
    for name, r in sorted(rates.items(), key=lambda kv: bin_order(kv[0])):
        used = [] if name == "all" else choices([s for s in scores if s.bin == name], fn)
        values = ", ".join(f"{c.threshold:.4f}" for c in used) if len(used) < 4 else "various"
        rows.append(
            f"| {config} | {name} | {label} | {values} | {r.fpir:.3f} ({r.alarms}/"
            f"{r.passersby}) | {r.fnir:.3f} ({r.probes - r.found}/{r.probes}) |"
        )
    out = {name: r.to_dict() for name, r in rates.items()}
    out["thresholds"] = sorted({f"{c.source} = {c.threshold:.4f}" for c in choices(scores, fn)})
    return out, rows


def sub_measured(config: str, n: int, target: float, scores, fixed, sized):
    """Rates of half 1 against random sub-galleries of ``n`` judged by the ``fixed`` (whole
    gallery) and the ``sized`` (for ``n``) track thresholds, and their table rows."""

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


def choices(scores, fn) -> list:
    """The distinct threshold choices ``fn`` makes for these searches, by threshold."""
    seen = {}
    for s in scores:
        if s.probe is not None:
            choice = fn.choice(*s.probe, search_faces(s))
            seen[(choice.source, choice.threshold)] = choice
    return sorted(seen.values(), key=lambda c: c.threshold)


def bin_order(label: str) -> float:
    return {"all": 1e9, WHOLE: 2e9}.get(label) or float(label.split("-")[0])
