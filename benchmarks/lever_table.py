"""One markdown table per probe condition: levers as rows, probe sizes as columns, each cell the
accuracy with its paired gain over the teacher (mean ± std over folds, folds won).

    python benchmarks/lever_table.py --protocol hr-lr \
        v1=out/v1-clean/results.json v2=out/v2-clean/results.json

Each argument is ``LABEL=results.json`` of one ``lrface benchmark`` run of a student (which
also scored the teacher on the same pairs). The teacher row is the first run's baseline; every
gain is paired against the teacher rows of the run itself, so runs on different fold subsets
are still compared fairly (a cell says how many folds it was scored on).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lrface.eval.benchmark import gain_text, paired_gain


def rows_by_key(rows: list[dict], protocol: str) -> dict[int, dict]:
    return {r["size"]: r for r in rows if r["protocol"] == protocol and r["size"] is not None}


def gain_cell(row: dict, base: dict) -> str:
    gain = paired_gain(base, row)
    return f"{100 * row['accuracy']:.2f} ({gain_text(gain)}, {gain['folds_won']}/{gain['folds']})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="LABEL=path/to/results.json, in row order")
    parser.add_argument("--protocol", default="hr-lr", choices=("hr-lr", "lr-lr"))
    args = parser.parse_args()
    runs = []
    for spec in args.runs:
        label, _, path = spec.partition("=")
        if not path:
            parser.error(f"{spec!r}: expected LABEL=results.json")
        results = json.loads(Path(path).read_text())
        if "baseline_rows" not in results:
            parser.error(f"{path}: no teacher rows (benchmark the student without --no-baseline)")
        runs.append((label, results))
    teacher = rows_by_key(runs[0][1]["baseline_rows"], args.protocol)
    sizes = sorted(teacher)
    print(f"| {args.protocol} | " + " | ".join(f"{s} px" for s in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    print("| teacher | " + " | ".join(f"{100 * teacher[s]['accuracy']:.2f}" for s in sizes) + " |")
    for label, results in runs:
        own = rows_by_key(results["rows"], args.protocol)
        base = rows_by_key(results["baseline_rows"], args.protocol)
        cells = [gain_cell(own[s], base[s]) if s in own and s in base else "—" for s in sizes]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
