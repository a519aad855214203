"""The open-set protocol of ``lrface.eval.openset`` on LFW View 2's people: align (cached
chips), degrade the probes, embed (cached) and score, one row per probe size."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from lrface.data.chips import aligned_chips
from lrface.data.degrade import EvalDegradation
from lrface.data.lfw import LFW
from lrface.detect.dlib_align import AlignSettings
from lrface.eval.embeddings import embed_chipset
from lrface.eval.openset import OpenSetResult, OpenSetSplit, evaluate_openset, split_people
from lrface.models.encoder import FaceEncoder


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


def run_openset(
    lfw: LFW,
    gallery_encoder: FaceEncoder,
    probe_encoder: FaceEncoder,
    sizes: list[int | None],
    target_fpir: float = 0.01,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> tuple[list[OpenSetResult], OpenSetSplit, int]:
    """Rows per probe size, the split used and how many images were dropped as unusable.

    Gallery: ``gallery_encoder`` at full size; probes: ``probe_encoder`` at each size, no flip
    (as ``lrface gallery search`` embeds them).
    """
    split = split_people(view2_people(lfw), seed=seed)
    relpaths = split.gallery + split.probes
    chipset = aligned_chips(lfw.root, relpaths, AlignSettings(), progress=progress, workers=workers)
    split, dropped = _usable(split, set(chipset.index))
    gallery_chips = chipset.subset(split.gallery)
    probe_chips = chipset.subset(list(dict.fromkeys(split.probes)))
    hr = EvalDegradation(None)
    gallery = embed_chipset(gallery_encoder, gallery_chips, hr, progress=progress)
    rows = []
    for size in sizes:
        embedded = embed_chipset(
            probe_encoder, probe_chips, EvalDegradation(size), progress=progress
        )
        probes = embedded[probe_chips.rows(split.probes)]
        rows.append(
            evaluate_openset(gallery, split.gallery_names, probes, split, target_fpir, size)
        )
    return rows, split, dropped


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
) -> tuple[Path, ...]:
    """``openset.json`` and ``openset.md`` in ``out``, and the thresholds merged into the
    encoder's ``own`` calibration (a new one without it), written over ``own`` with ``store``,
    else to ``out/calibration.json``. Returns the three paths."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "encoder": probe_key,
        "gallery_encoder": gallery_key,
        "seed": seed,
        "enrolled": len(split.gallery),
        "images_dropped": dropped,
        **info,
        "rows": [r.to_dict() for r in rows],
    }
    (out / "openset.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "openset.md").write_text(markdown_rows(rows) + "\n")
    target = own if store and own is not None else out / "calibration.json"
    calib = (
        json.loads(own.read_text())
        if own is not None
        else {"gallery_encoder": gallery_key, "probe_encoder": probe_key, "flip": False}
    )
    calib |= {"openset": openset_entries(rows), "openset_fpir": fpir}
    target.write_text(json.dumps(calib, indent=2) + "\n")
    return out / "openset.json", out / "openset.md", target
