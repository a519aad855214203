"""Side-by-side Markdown table of two ``lrface benchmark`` results (e.g. teacher vs student).

    python benchmarks/compare_results.py out/baseline-v2-folds/results.json \
        out/v2-ti-l2/results.json

Cells: accuracy % mean +- std over folds (TAR % at FAR 1e-3); the gain column is the
difference of mean accuracies in points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def by_key(path: Path) -> dict[tuple[str, int | None], dict]:
    return {(r["protocol"], r["size"]): r for r in json.loads(path.read_text())["rows"]}


def cell(row: dict | None) -> str:
    if row is None:
        return "—"
    return (
        f"{100 * row['accuracy']:.2f} ± {100 * row['accuracy_std']:.2f} "
        f"({100 * row['tar_far_1e_3']:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("baseline", type=Path, help="results.json of the reference (teacher)")
    parser.add_argument("candidate", type=Path, help="results.json of the candidate (student)")
    parser.add_argument("--names", default="teacher,student", help="column names")
    args = parser.parse_args()
    base, cand = by_key(args.baseline), by_key(args.candidate)
    first, second = args.names.split(",")
    sizes = sorted({s for _, s in cand if s is not None})
    print(
        f"| face size | hr-lr {first} | hr-lr {second} | gain | lr-lr {first} | "
        f"lr-lr {second} | gain |"
    )
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        cells = []
        for protocol in ("hr-lr", "lr-lr"):
            b, c = base.get((protocol, size)), cand.get((protocol, size))
            gain = (
                "—" if b is None or c is None else f"{100 * (c['accuracy'] - b['accuracy']):+.2f}"
            )
            cells += [cell(b), cell(c), gain]
        print(f"| {size}x{size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
