"""The open-set protocol of ``lrface.eval.openset`` on LFW View 2's people: align (cached
chips), degrade the probes, embed (cached) and score, one row per probe size."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from lrface.constants import SEARCH_PROBE_FLIP, TEMPLATE_FLIP
from lrface.data.chips import aligned_chips
from lrface.data.degrade import EvalDegradation
from lrface.data.lfw import LFW
from lrface.detect.dlib_align import AlignSettings
from lrface.eval.embeddings import embed_chipset
from lrface.eval.openset import (
    OpenSetResult,
    OpenSetSplit,
    evaluate_openset,
    evaluate_scores,
    split_people,
)
from lrface.models.encoder import FaceEncoder
from lrface.search.cohort import Cohort, stored_cohort
from lrface.search.normalize import (
    DEFAULT_TOP_K,
    METHODS,
    STAT_METHODS,
    centred,
    normalize_scores,
    side_stats,
)


def view2_people(lfw: LFW) -> dict[str, list[str]]:
    """``{person: relpaths}`` of every person named in View 2 (pairs.txt)."""
    people = {name for pair in lfw.view2() for name in pair.people}
    images: dict[str, list[str]] = defaultdict(list)
    for image in lfw.images():
        if image.identity in people:
            images[image.identity].append(image.relpath)
    return dict(images)


def _usable(split: OpenSetSplit, ok: set[str]) -> tuple[OpenSetSplit, int]:
    """Drop images that could not be aligned (and the mated probes of a person whose gallery
    photo failed); the number dropped."""
    keep_g = [i for i, path in enumerate(split.gallery) if path in ok]
    enrolled = {split.gallery_names[i] for i in keep_g}
    keep_p = [
        i
        for i, (path, name) in enumerate(zip(split.probes, split.probe_names, strict=True))
        if path in ok and (name is None or name in enrolled)
    ]
    dropped = len(split.gallery) - len(keep_g) + len(split.probes) - len(keep_p)
    return (
        replace(
            split,
            gallery=[split.gallery[i] for i in keep_g],
            gallery_names=[split.gallery_names[i] for i in keep_g],
            probes=[split.probes[i] for i in keep_p],
            probe_names=[split.probe_names[i] for i in keep_p],
            probe_half=split.probe_half[keep_p],
        ),
        dropped,
    )


def openset_embeddings(
    lfw: LFW,
    gallery_encoder: FaceEncoder,
    probe_encoder: FaceEncoder,
    sizes: list[int | None],
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    template_flip: bool = TEMPLATE_FLIP,
    probe_flip: bool | None = None,
) -> tuple[OpenSetSplit, int, np.ndarray, dict[int | None, np.ndarray]]:
    """The split, the images dropped as unusable, the gallery embeddings (``gallery_encoder``
    at full size, averaged with the mirrored face's when ``template_flip``, as enrolment makes
    templates) and the probe embeddings per size (``probe_encoder``; mirrored or not as
    ``probe_flip`` says, by default as ``lrface gallery search`` embeds them:
    ``served_probe_flip``), in split order."""
    if probe_flip is None:
        probe_flip = served_probe_flip(probe_encoder)
    split = split_people(view2_people(lfw), seed=seed)
    relpaths = split.gallery + split.probes
    chipset = aligned_chips(lfw.root, relpaths, AlignSettings(), progress=progress, workers=workers)
    split, dropped = _usable(split, set(chipset.index))
    gallery_chips = chipset.subset(split.gallery)
    probe_chips = chipset.subset(list(dict.fromkeys(split.probes)))
    gallery = embed_chipset(
        gallery_encoder, gallery_chips, EvalDegradation(None), template_flip, progress
    )
    probes = {}
    for size in sizes:
        embedded = embed_chipset(
            probe_encoder, probe_chips, EvalDegradation(size), probe_flip, progress
        )
        probes[size] = embedded[probe_chips.rows(split.probes)]
    return split, dropped, gallery, probes


def served_probe_flip(probe_encoder: FaceEncoder) -> bool:
    """Whether a still image's search averages this encoder's probes with their mirror image:
    the teacher's, where ``SEARCH_PROBE_FLIP`` says so; a student's never."""
    return SEARCH_PROBE_FLIP and not probe_encoder.teacher


def run_openset(
    lfw: LFW,
    gallery_encoder: FaceEncoder,
    probe_encoder: FaceEncoder,
    sizes: list[int | None],
    target_fpir: float = 0.01,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    cohort: Cohort | None = None,
    scoring: str = "raw",
    top_k: int = DEFAULT_TOP_K,
) -> tuple[list[OpenSetResult], OpenSetSplit, int]:
    """Rows per probe size, the split used and how many images were dropped as unusable.

    Gallery: ``gallery_encoder`` at full size (templates as enrolment makes them); probes:
    ``probe_encoder`` at each size, as ``lrface gallery search`` embeds them
    (``served_probe_flip``).
    ``scoring`` other than ``raw``: scores normalized against ``cohort`` (the probe encoder's;
    each size against the band a search of that size uses), as ``Gallery.search`` scores
    them.
    """
    split, dropped, gallery, probes = openset_embeddings(
        lfw, gallery_encoder, probe_encoder, sizes, seed, workers, progress
    )
    if scoring == "raw":
        rows = [
            evaluate_openset(gallery, split.gallery_names, probes[size], split, target_fpir, size)
            for size in sizes
        ]
        return rows, split, dropped
    if cohort is None:
        raise ValueError(f"{scoring} scoring needs the probe encoder's cohort")
    rows = []
    for size in sizes:
        band = list(cohort.bands.values())[cohort.band_index(size)]
        rows += normalized_rows(
            gallery, probes[size], split, cohort.gallery, band, size, [target_fpir], (scoring,),
            top_k,
        )  # fmt: skip
    return rows, split, dropped


def normalized_rows(
    gallery: np.ndarray,
    probes: np.ndarray,
    split: OpenSetSplit,
    cohort_gallery: np.ndarray,
    cohort_band: np.ndarray,
    size: int | None,
    fpirs: list[float],
    methods: tuple[str, ...] = METHODS,
    top_k: int = DEFAULT_TOP_K,
) -> list[OpenSetResult]:
    """One row per method and target FPIR at one probe size: the scores normalized against
    the cohort (``cohort_gallery``: teacher, full size; ``cohort_band``: the probe encoder at
    this size), thresholds on half 0, rates on half 1 (``evaluate_scores``)."""
    raw = probes @ gallery.T
    probe_stats = side_stats(probes, cohort_gallery, top_k)
    gallery_stats = side_stats(gallery, cohort_band, top_k)
    rows = []
    for method in methods:
        if method == "centre":
            scores = (
                centred(probes, cohort_band.mean(0)) @ centred(gallery, cohort_gallery.mean(0)).T
            )
        else:
            scores = normalize_scores(raw, method, probe_stats, gallery_stats)
        for target in fpirs:
            rows.append(evaluate_scores(scores, split.gallery_names, split, target, size, method))
    return rows


def normalized_markdown(rows: list[OpenSetResult]) -> str:
    """The scoring comparison: FNIR at each target FPIR, FPIR reached on half 1, rank-1/5."""
    lines = [
        "| probe size | scoring | target FPIR | FPIR (held-out half) | FNIR | rank-1 miss | "
        "rank-5 miss |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        size = "full" if r.size is None else f"{r.size} px"
        rank5 = "" if r.rank5_miss is None else f"{100 * r.rank5_miss:.1f}%"
        lines.append(
            f"| {size} | {r.method} | {100 * r.target_fpir:g}% | {100 * r.fpir:.2f}% | "
            f"{100 * r.fnir:.1f}% | {100 * r.rank1_miss:.1f}% | {rank5} |"
        )
    return "\n".join(lines)


def markdown_rows(rows: list[OpenSetResult]) -> str:
    """The FPIR / FNIR table."""
    lines = [
        "| probe size | threshold | FPIR (target) | FNIR | rank-1 miss | mated / non-mated |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        size = "full" if r.size is None else f"{r.size}x{r.size}"
        lines.append(
            f"| {size} | {r.threshold:.4f} | {100 * r.fpir:.2f}% ({100 * r.target_fpir:g}%) | "
            f"{100 * r.fnir:.1f}% | {100 * r.rank1_miss:.1f}% | {r.mated} / {r.nonmated} |"
        )
    return "\n".join(lines)


def openset_entries(rows: list[OpenSetResult]) -> dict[str, float]:
    """``{"16": t, ..., "full": t}`` for a calibration file's ``openset``."""
    return {("full" if r.size is None else str(r.size)): r.threshold for r in rows}


def scoring_setup(encoder: str, scoring: str) -> tuple[Cohort | None, Path | None]:
    """The cohort ``scoring`` normalizes ``encoder``'s scores against (None for raw) and the
    calibration file its thresholds belong in (the raw one, or the ``-<scoring>`` one beside
    it); ValueError when the scoring is unknown or the encoder has no stored cohort."""
    from lrface.calibration import calibration_path, scoring_calibration_target

    if scoring == "raw":
        return None, calibration_path(encoder)
    if scoring not in STAT_METHODS:
        raise ValueError(f"scoring must be one of {', '.join(('raw', *STAT_METHODS))}")
    cohort = stored_cohort(encoder)
    if cohort is None:
        raise ValueError(f"{encoder!r} has no stored cohort; build one with `lrface build-cohort`")
    return cohort, scoring_calibration_target(encoder, scoring)


def write_openset(
    out: Path,
    rows: list[OpenSetResult],
    split,
    dropped: int,
    gallery_key: str,
    probe_key: str,
    fpir: float,
    seed: int,
    info: dict,
    own: Path | None = None,
    store: bool = False,
    cohort: Cohort | None = None,
    scoring: str = "raw",
) -> tuple[Path, ...]:
    """``openset.json`` and ``openset.md`` in ``out``, and the thresholds merged into the
    encoder's ``own`` calibration (a new one where it has none yet), written over ``own`` with
    ``store``, else to ``out/calibration.json``. Thresholds on normalized scores name their
    ``scoring``, the ``cohort`` and the gallery size they were set at. Returns the three
    paths."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "encoder": probe_key,
        "gallery_encoder": gallery_key,
        "seed": seed,
        "enrolled": len(split.gallery),
        "images_dropped": dropped,
        "scoring": scoring,
        **info,
        "rows": [r.to_dict() for r in rows],
    }
    (out / "openset.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "openset.md").write_text(markdown_rows(rows) + "\n")
    target = own if store and own is not None else out / "calibration.json"
    calib = (
        json.loads(own.read_text())
        if own is not None and own.is_file()
        else {"gallery_encoder": gallery_key, "probe_encoder": probe_key, "flip": False}
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
    return out / "openset.json", out / "openset.md", target
