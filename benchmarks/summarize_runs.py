"""Markdown table of training runs' final held-out evaluation, beside a benchmark baseline.

Reads each run's ``config.yaml`` and the last row of its ``eval.csv`` (the final step's
evaluation, never ``best/``), and optionally a ``lrface benchmark`` ``results.json`` for the
teacher row on the same pairs.

    python benchmarks/summarize_runs.py runs/view1-compact-methods/* \\
        --baseline out/baseline-view1-noflip/results.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import yaml


def final_eval(run: Path) -> dict[str, float] | None:
    """The last evaluation row of a run, or None if it never evaluated."""
    path = run / "eval.csv"
    if not path.is_file():
        return None
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return {k: float(v) for k, v in rows[-1].items()} if rows else None


def setup(config: dict) -> str:
    """What else differs between runs: precision, jitter, a degradation range other than 8-32,
    weight decay and head dropout above the defaults, student widths and EMA where set, the
    clean degradation (no blur, noise or JPEG), erasing, colour jitter, a pinned common
    component and any loss constructor kwargs."""
    notes = [config.get("precision", "fp32")]
    degradation = config.get("degradation", {})
    if any(degradation.get(k) for k in ("jitter_shift", "jitter_scale", "jitter_degrees")):
        notes.append("jitter")
    low, high = degradation.get("min_size", 8), degradation.get("max_size", 32)
    if (low, high) != (8, 32):
        notes.append(f"sizes {low}-{high}")
    if config.get("weight_decay", 5e-4) > 5e-4:
        notes.append(f"wd {config['weight_decay']:g}")
    kwargs = config.get("student_kwargs") or {}
    if kwargs.get("dropout"):
        notes.append(f"dropout {kwargs['dropout']:g}")
    if "widths" in kwargs:
        notes.append("widths " + "/".join(str(w) for w in kwargs["widths"]))
    if kwargs.get("fix_common"):
        notes.append("fixed common component")
    if config.get("ema_decay"):
        notes.append(f"EMA {config['ema_decay']:g}")
    if all(degradation.get(k) == 0 for k in ("blur_prob", "noise_prob", "jpeg_prob")):
        notes.append("no blur/noise/JPEG")
    for loss, kwargs in (config.get("method_kwargs") or {}).items():
        notes += [f"{loss} {key}={value}" for key, value in kwargs.items()]
    if degradation.get("erase_prob"):
        notes.append(f"erasing {degradation['erase_prob']:g}")
    if degradation.get("color_prob"):
        notes.append(f"colour jitter {degradation['color_prob']:g}")
    return ", ".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--baseline", type=Path, help="teacher results.json (lrface benchmark)")
    parser.add_argument("--protocol", default="hr-lr")
    parser.add_argument("--sizes", default="8,12,16")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    cells = " | ".join(f"{s}x{s} acc (TAR@1e-3)" for s in sizes)
    print(f"| method | student | setup | steps | {cells} | mean acc |")
    print("|---|---|---|---|" + "---|" * (len(sizes) + 1))
    if args.baseline:
        rows = json.loads(args.baseline.read_text())["rows"]
        by_size = {r["size"]: r for r in rows if r["protocol"] == args.protocol}
        accs = [100 * by_size[s]["accuracy"] for s in sizes]
        parts = " | ".join(
            f"{a:.2f} ({100 * by_size[s]['tar_far_1e_3']:.1f})"
            for a, s in zip(accs, sizes, strict=True)
        )
        print(f"| teacher (no transfer) | — | — | — | {parts} | {sum(accs) / len(accs):.2f} |")
    for run in args.runs:
        metrics = final_eval(run)
        if metrics is None:
            continue
        config = yaml.safe_load((run / "config.yaml").read_text())
        accs = [100 * metrics[f"{args.protocol}/s{s}/accuracy"] for s in sizes]
        parts = " | ".join(
            f"{a:.2f} ({100 * metrics[f'{args.protocol}/s{s}/tar_far_1e-3']:.1f})"
            for a, s in zip(accs, sizes, strict=True)
        )
        steps = int(metrics["step"])
        print(
            f"| {config['method']} | {config['student']} | {setup(config)} | {steps} | {parts} | "
            f"{sum(accs) / len(accs):.2f} |"
        )


if __name__ == "__main__":
    main()
