"""End-to-end 1:N identification: an HR gallery searched with low-resolution probes. Pure
functions; ``eval.lfw_identification`` runs them on LFW with detection.

Conventions
-----------
* People: every LFW person with two or more images, in name order. The gallery photo is
  their first image (sorted by path), the probe their second.
* Gallery: the gallery photo at full resolution, MTCNN (smallest face ``GALLERY_MIN_FACE``
  px), the largest face, aligned and embedded by the teacher as enrolment embeds templates
  (averaged with the mirror image, ``TEMPLATE_FLIP``). A person whose gallery photo gives no
  face is left out of the benchmark (and counted). One template per person.
* Probe at face width s: the raw image area-resized (PIL box filter) by ``s / FACE_PX`` (LFW
  faces are about 110 px wide), so its face is about s px wide; MTCNN (smallest face
  ``PROBE_MIN_FACE`` px) on that small image as it is, no upscaling; the largest face kept
  (the pipeline's ``largest`` policy) and embedded by the pipeline: the teacher alone, or
  teacher + student, which routes faces narrower than the size cutoff to the student.
* Camera preset (``data.degrade.PRESETS``; ``clean`` = none): the preset's HR effects (blur,
  grey-scale, light, gamma) on the raw image before the shrink and its LR effects (noise, JPEG)
  on the small image after it, drawn from an RNG seeded by the probe's path, the face width
  and the preset's seed, so every encoder sees the same probes. The preset's blur lengths are
  in pixels of a ~100 px face (its 150 px chip), about the scale of a raw LFW face (~110 px).
  The reference chips pass through the same preset as ``EvalDegradation`` applies it.
* Score: cosine similarity of the probe with each person's template. A probe's rank is 1 +
  the number of gallery people scoring strictly higher than its own person; rank-k rate =
  probes of rank <= k over *all* probes, so a probe without a detected face is a miss at
  every rank. "Other face" counts kept faces that are not the centred subject
  (``data.detected.is_subject``): likely someone in the background, searched like any other.
* Reference without detection: the probe's dlib-aligned 150 px chip area-downsampled to
  ``reference_chip_px(s)`` px, the side with the pixel density of an s px face (a 110 px
  LFW face gives a 124 px dlib chip side: median ``150 / chip_scale`` over every 130th LFW
  image), embedded by the teacher (bicubic to 150) and by the student (native). Probes that
  could not be aligned are misses.
* Students that never saw their probes: a View 2 run per fold probes fold K's people with the
  student trained without fold K (the gallery keeps everyone); View 2's folds are
  person-disjoint, so ``pool_folds`` sums hits and probes over folds and every person is
  searched exactly once. A View 1 student probes the people of pairsDevTest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from lrface.data.detected import FACE_PX
from lrface.vectors import l2_normalize

GALLERY_MIN_FACE = 20
PROBE_MIN_FACE = 12
REFERENCE_CHIP_PX_PER_FACE_PX = 124 / FACE_PX
RANKS = (1, 5)


@dataclass(frozen=True)
class Person:
    """One benchmark identity: the gallery photo and the probe photo (relative paths)."""

    name: str
    gallery: str
    probe: str


def benchmark_people(images: Iterable[tuple[str, str]], limit: int | None = None) -> list[Person]:
    """People with two or more images (``(identity, relpath)`` pairs), in name order, with
    their first and second image by path; the first ``limit`` of them."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for identity, relpath in images:
        by_name[identity].append(relpath)
    people = [
        Person(name, *sorted(paths)[:2])
        for name, paths in sorted(by_name.items())
        if len(paths) > 1
    ]
    return people[:limit] if limit is not None else people


def reference_chip_px(face_px: float) -> int:
    """Side of the dlib chip with the pixel density of a ``face_px`` wide face."""
    return round(face_px * REFERENCE_CHIP_PX_PER_FACE_PX)


def truth_ranks(probes: np.ndarray, templates: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of each probe's true person ``truth[i]`` (a row of ``templates``)
    among all templates, by cosine similarity; ties count in the probe's favour."""
    scores = l2_normalize(probes) @ l2_normalize(templates).T
    own = scores[np.arange(len(truth)), truth]
    return 1 + np.sum(scores > own[:, None], axis=1)


def rank_rates(ranks: np.ndarray, probes: int) -> dict:
    """Hits and rates at ``RANKS`` over ``probes`` probes (those without a rank are misses)."""
    if len(ranks) > probes:
        raise ValueError(f"{len(ranks)} ranks for {probes} probes")
    out: dict = {"probes": probes}
    for k in RANKS:
        hits = int(np.sum(np.asarray(ranks) <= k))
        out[f"rank{k}_hits"] = hits
        out[f"rank{k}"] = round(hits / probes, 4) if probes else 0.0
    return out


def pool_folds(reports: list[dict]) -> dict:
    """Per-fold results (``{size: {kind: {"pipelines": {label: rates}, ...}}}``, each from
    person-disjoint probes) summed into one: hits, probes and misses add up, rates follow."""
    pooled: dict = {}
    for report in reports:
        for size, kinds in report.items():
            for kind, block in kinds.items():
                into = pooled.setdefault(size, {}).setdefault(kind, {"pipelines": {}})
                for key in ("no_face", "other_face", "unreadable", "unaligned"):
                    if key in block:
                        into[key] = into.get(key, 0) + block[key]
                for key in ("image_px", "chip_px"):
                    if key in block:
                        into[key] = block[key]
                for label, rates in block["pipelines"].items():
                    cell = into["pipelines"].setdefault(label, {})
                    for key, value in rates.items():
                        if key == "probes" or key.endswith(("_hits", "_served")):
                            cell[key] = cell.get(key, 0) + value
    for kinds in pooled.values():
        for block in kinds.values():
            for cell in block["pipelines"].values():
                for k in RANKS:
                    hits = cell[f"rank{k}_hits"]
                    cell[f"rank{k}"] = round(hits / cell["probes"], 4) if cell["probes"] else 0.0
    return pooled


def _percent(cell: dict, k: int) -> str:
    """Rank-k rate in % from the hit count (the stored rate is already rounded)."""
    return f"{100 * cell[f'rank{k}_hits'] / cell['probes']:.1f}%" if cell["probes"] else "-"


def markdown_table(results: dict) -> str:
    """``{size: {"detected": ..., "reference": ...}}`` as a Markdown table of rank-1/5 rates."""
    rows = [
        "| face px | probe | pipeline | probes | to student | rank-1 | rank-5 | no face "
        "| other face |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, kinds in results.items():
        detected, reference = kinds["detected"], kinds["reference"]
        for label, r in detected["pipelines"].items():
            rows.append(
                f"| {size} | {detected['image_px']}x{detected['image_px']} image, MTCNN | "
                f"{label} | {r['probes']} | {r.get('student_served', 0)} | "
                f"{_percent(r, 1)} | {_percent(r, 5)} | {detected['no_face']} | "
                f"{detected['other_face']} |"
            )
        for label, r in reference["pipelines"].items():
            served = r["probes"] - reference["unaligned"] if label == "student" else 0
            rows.append(
                f"| {size} | dlib chip -> {reference['chip_px']} px, no detection | {label} | "
                f"{r['probes']} | {served} | {_percent(r, 1)} | {_percent(r, 5)} | "
                f"{reference['unaligned']} | - |"
            )
    return "\n".join(rows)
