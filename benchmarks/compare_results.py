"""Markdown table of ``lrface benchmark`` results side by side: a baseline and candidates.

    python benchmarks/compare_results.py out/baseline-v2-folds-noflip/results.json \
        out/v2-ti-l2/results.json out/v2-ti-prototype/results.json --names teacher,l2,prototype+l2

One table per protocol (hr-lr, lr-lr). Cells: accuracy % mean +- std over folds (TAR % at
FAR 1e-3). Each candidate's gain column is the mean of its per-fold accuracy differences from
the baseline on the same folds, +- their std, and how many folds it won: a paired comparison,
which is what "outside the fold std" should mean when both sides see the same pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lrface.eval.benchmark import gain_text
from lrface.eval.benchmark import paired_gain as benchmark_gain


def by_key(path: Path) -> dict[tuple[str, int | None], dict]:
    return {(r["protocol"], r["size"]): r for r in json.loads(path.read_text())["rows"]}


def cell(row: dict | None) -> str:
    if row is None:
        return "—"
    return (
        f"{100 * row['accuracy']:.2f} ± {100 * row['accuracy_std']:.2f} "
        f"({100 * row['tar_far_1e_3']:.1f})"
    )


def paired_gain(base: dict | None, cand: dict | None) -> str:
    """Mean +- std of the per-fold accuracy differences (points) and folds won
    (``lrface.eval.benchmark.paired_gain``)."""
    if base is None or cand is None:
        return "—"
    try:
        gain = benchmark_gain(base, cand)
    except ValueError as exc:
        raise SystemExit(f"{exc} (benchmark both with the same --folds)") from None
    return f"{gain_text(gain)} ({gain['folds_won']}/{gain['folds']})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("baseline", type=Path, help="results.json of the reference (teacher)")
    parser.add_argument("candidates", type=Path, nargs="+", help="results.json of candidates")
    parser.add_argument("--names", default=None, help="comma-separated names, baseline first")
    args = parser.parse_args()
    names = (
        args.names.split(",")
        if args.names
        else ["baseline"] + [p.parent.name for p in args.candidates]
    )
    if len(names) != 1 + len(args.candidates):
        parser.error("--names needs one name per results file")
    base = by_key(args.baseline)
    cands = [by_key(p) for p in args.candidates]
    sizes = sorted({s for cand in cands for _, s in cand if s is not None})
    for protocol in ("hr-lr", "lr-lr"):
        head = [f"{protocol} {names[0]}"]
        for name in names[1:]:
            head += [name, f"gain ({name})"]
        print(f"\n| face size | {' | '.join(head)} |")
        print("|---" * (len(head) + 1) + "|")
        for size in sizes:
            b = base.get((protocol, size))
            cells = [cell(b)]
            for cand in cands:
                c = cand.get((protocol, size))
                cells += [cell(c), paired_gain(b, c)]
            print(f"| {size}x{size} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
