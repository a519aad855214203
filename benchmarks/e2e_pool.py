"""Pool per-fold end-to-end identification runs into one table.

Each View 2 fold's people are searched with the student that never saw them
(``e2e_identification.py --probe-fold K --student <fold-K checkpoint>``); the folds are
person-disjoint, so summing hits and probes over the ten runs scores every View 2 person with
two or more images exactly once, each by a student that did not train on them.

    bash benchmarks/e2e_folds.sh runs/v2-ti-prototype out/e2e-v2-prototype
    python benchmarks/e2e_pool.py out/e2e-v2-prototype/fold-*.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reports", nargs="+", type=Path, help="e2e_identification JSON files")
    args = parser.parse_args()
    reports = [json.loads(p.read_text()) for p in args.reports]
    folds = sorted(r["probe_fold"] for r in reports)
    if None in folds or len(set(folds)) != len(folds):
        parser.error("each report must come from a different --probe-fold")
    hits: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    misses: dict[tuple[str, str], int] = defaultdict(int)
    for report in reports:
        for size, result in report["sizes"].items():
            for kind in ("detected", "reference"):
                block = result[kind]
                misses[size, kind] += block.get("no_face", block.get("unaligned", 0))
                for label, r in block["pipelines"].items():
                    cell = hits[size, kind, label]
                    cell[0] += r["rank1_hits"]
                    cell[1] += r["rank5_hits"]
                    cell[2] += r["probes"]
                    cell[3] += r.get("student_served", 0)
    gallery = {r["people"] for r in reports}
    wall = sum(r["wall_s"] for r in reports)
    print(
        f"LFW 1:N identification pooled over View 2 folds {folds}: gallery {sorted(gallery)} "
        f"people (first photo, MTCNN + teacher), each fold's probes searched with its own "
        f"student; size cutoff {sorted({r['size_cutoff'] for r in reports})} px; "
        f"total wall time {wall:.0f} s.\n"
    )
    print("| face px | probe | pipeline | probes | to student | rank-1 | rank-5 | no face |")
    print("|---|---|---|---|---|---|---|---|")
    for (size, kind, label), (r1, r5, n, served) in hits.items():
        probe = "raw image, MTCNN" if kind == "detected" else "dlib chip, no detection"
        routed = served if kind == "detected" else (n if label == "student" else 0)
        print(
            f"| {size} | {probe} | {label} | {n} | {routed} | {100 * r1 / n:.1f}% | "
            f"{100 * r5 / n:.1f}% | {misses[size, kind]} |"
        )


if __name__ == "__main__":
    main()
