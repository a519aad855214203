"""One markdown table per probe condition: levers as rows, probe sizes as columns, each cell the
accuracy [TAR % at FAR 1e-3 / 1e-4] with its paired gain over the teacher (mean ± std over
folds, folds won), or over another row with ``--against LABEL``.

    python benchmarks/lever_table.py --protocol hr-lr \
        v1=out/v1-clean/results.json v2=out/v2-clean/results.json
    python benchmarks/lever_table.py --against v2 \
        v2=out/v2-clean/results.json v3=out/v3-clean/results.json

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


def tail_text(row: dict) -> str:
    """``[TAR@1e-3 / TAR@1e-4]`` in %; runs made before FAR 1e-4 was reported show a dash."""
    far4 = row.get("tar_far_1e_4")
    return f"[{100 * row['tar_far_1e_3']:.1f} / {'—' if far4 is None else f'{100 * far4:.1f}'}]"


def gain_cell(row: dict, base: dict | None) -> str:
    """Accuracy, tail and (without ``base``: none) the paired gain over ``base``."""
    text = f"{100 * row['accuracy']:.2f} {tail_text(row)}"
    if base is None:
        return text
    gain = paired_gain(base, row)
    return f"{text} ({gain_text(gain)}, {gain['folds_won']}/{gain['folds']})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="LABEL=path/to/results.json, in row order")
    parser.add_argument("--protocol", default="hr-lr", choices=("hr-lr", "lr-lr"))
    parser.add_argument(
        "--against", default="teacher", help="gains over the teacher or over this row's LABEL"
    )
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
    labels = [label for label, _ in runs]
    if args.against != "teacher" and args.against not in labels:
        parser.error(f"--against {args.against!r}: not one of the labels {labels}")
    against = dict(runs).get(args.against)
    sizes = sorted(teacher)
    print(
        f"| {args.protocol} (gains over {args.against}) | "
        + " | ".join(f"{s} px" for s in sizes)
        + " |"
    )
    print("|---" * (len(sizes) + 1) + "|")
    print("| teacher | " + " | ".join(gain_cell(teacher[s], None) for s in sizes) + " |")
    for label, results in runs:
        own = rows_by_key(results["rows"], args.protocol)
        if against is None:
            base = rows_by_key(results["baseline_rows"], args.protocol)
        else:
            base = rows_by_key(against["rows"], args.protocol)
        cells = [
            gain_cell(own[s], None if label == args.against else base[s])
            if s in own and s in base
            else "—"
            for s in sizes
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
