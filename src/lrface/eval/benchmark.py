"""The LFW cross-resolution benchmark: encoders through every protocol at every resolution.

For each resolution s (``None`` = full), every image of the chosen pairs is aligned once
(cached), degraded by ``EvalDegradation(s)`` (through a camera preset such as ``cctv`` or
``ir`` when ``BenchmarkConfig.degradation`` names one), embedded (cached), and scored under the
protocols of ``lrface.eval.protocol``. The gallery side is always the gallery encoder at full
resolution; the probe side is the probe encoder at s (for the teacher baseline both are the
teacher; for a student, the gallery is its teacher and the probe the student).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from lrface.data.chips import ChipSet, aligned_chips
from lrface.data.degrade import EvalDegradation, inter_eye_distance
from lrface.data.lfw import LFW, Pair
from lrface.detect.dlib_align import AlignSettings
from lrface.eval.embeddings import embed_chipset
from lrface.eval.protocol import PROTOCOLS, protocol_trials, trial_folds, verification_report
from lrface.models.encoder import FaceEncoder

DEFAULT_SIZES: tuple[int | None, ...] = (8, 12, 16, 20, 24, 32, None)


@dataclass
class BenchmarkConfig:
    """What to run; serialized next to the results."""

    view: str = "view2"
    sizes: list[int | None] = field(default_factory=lambda: list(DEFAULT_SIZES))
    protocols: list[str] = field(default_factory=lambda: ["hr-hr", "hr-lr", "lr-lr"])
    kernel: str = "area"
    flip: bool = True
    pairs_per_fold: int | None = None
    cnn_fallback: bool = False
    degradation: str = "clean"


@dataclass
class PairData:
    """The pairs that can be evaluated, their chips, and what had to be skipped."""

    pairs: list[Pair]
    chipset: ChipSet
    skipped_pairs: int
    failures: dict[str, str]
    fallbacks: int


def limit_pairs(pairs: list[Pair], per_fold: int | None) -> list[Pair]:
    """The first ``per_fold`` same and ``per_fold`` different pairs of each fold (all if None)."""
    if per_fold is None:
        return pairs
    counts: Counter = Counter()
    kept = []
    for pair in pairs:
        if counts[(pair.fold, pair.same)] < per_fold:
            counts[(pair.fold, pair.same)] += 1
            kept.append(pair)
    return kept


def load_pair_data(
    lfw: LFW,
    pairs: list[Pair],
    progress: bool = True,
    workers: int = 1,
    settings: AlignSettings | None = None,
) -> PairData:
    """Align every image of the pairs; drop pairs with an image that could not be used."""
    relpaths = list(dict.fromkeys(p for pair in pairs for p in (pair.first, pair.second)))
    chipset = aligned_chips(lfw.root, relpaths, settings, progress=progress, workers=workers)
    usable = [p for p in pairs if p.first in chipset.index and p.second in chipset.index]
    return PairData(
        usable, chipset, len(pairs) - len(usable), dict(chipset.failures), len(chipset.fallbacks)
    )


def _pair_embeddings(
    encoder: FaceEncoder, data: PairData, degradation: EvalDegradation, flip: bool, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    embeddings = embed_chipset(encoder, data.chipset, degradation, flip=flip, progress=progress)
    first = data.chipset.rows([p.first for p in data.pairs])
    second = data.chipset.rows([p.second for p in data.pairs])
    return embeddings[first], embeddings[second]


def fold_subset(data: PairData, fold: int) -> tuple[np.ndarray, PairData]:
    """Indices of one fold's pairs in ``data`` and a PairData of just those pairs."""
    index = np.array([i for i, p in enumerate(data.pairs) if p.fold == fold], dtype=np.int64)
    pairs = [data.pairs[i] for i in index]
    images = list(dict.fromkeys(p for pair in pairs for p in (pair.first, pair.second)))
    return index, PairData(pairs, data.chipset.subset(images), 0, {}, 0)


def _probe_embeddings(
    probe: FaceEncoder | Mapping[int, FaceEncoder],
    data: PairData,
    degradation: EvalDegradation,
    flip: bool,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """One encoder for every pair, or (per-fold students) each fold's pairs by its own."""
    if isinstance(probe, FaceEncoder):
        return _pair_embeddings(probe, data, degradation, flip, progress)
    dim = next(iter(probe.values())).dim
    first = np.zeros((len(data.pairs), dim), np.float32)
    second = np.zeros_like(first)
    for fold, encoder in probe.items():
        index, subset = fold_subset(data, fold)
        first[index], second[index] = _pair_embeddings(encoder, subset, degradation, flip, progress)
    return first, second


def evaluate(
    data: PairData,
    gallery_encoder: FaceEncoder,
    probe_encoder: FaceEncoder | Mapping[int, FaceEncoder],
    config: BenchmarkConfig,
    progress: bool = True,
) -> list[dict]:
    """One row per (protocol, size): the metrics of ``verification_report`` plus geometry.

    ``probe_encoder`` may map each fold to the student trained without that fold's people
    (``data`` must then hold only those folds): every trial is scored by a model that never
    saw its people, and each fold's threshold still comes from the other folds' trials.
    """
    same = np.array([p.same for p in data.pairs])
    folds = trial_folds(np.array([p.fold for p in data.pairs]))
    hr = EvalDegradation(None)
    gallery = _pair_embeddings(gallery_encoder, data, hr, config.flip, progress)
    if isinstance(probe_encoder, FaceEncoder):
        probe_key = probe_encoder.cache_key
    else:
        probe_key = "per-fold:" + ",".join(
            f"{k}={e.cache_key}" for k, e in sorted(probe_encoder.items())
        )
    probe_is_gallery = probe_key == gallery_encoder.cache_key
    rows = []
    for size in config.sizes:
        probe = _probe_embeddings(
            probe_encoder,
            data,
            EvalDegradation(size, config.kernel, config.degradation),
            config.flip,
            progress,
        )
        for protocol in config.protocols:
            if (protocol == "hr-hr") != (size is None):
                continue
            if size is None and protocol != "hr-hr" and probe_is_gallery:
                continue  # identical to hr-hr
            scores, truth, folds_of_trials = protocol_trials(protocol, gallery, probe, same, folds)
            report = verification_report(scores, truth, folds_of_trials)
            rows.append(
                {
                    "protocol": protocol,
                    "size": size,
                    "inter_eye_px": None if size is None else round(inter_eye_distance(size), 1),
                    "gallery_encoder": gallery_encoder.cache_key,
                    "probe_encoder": probe_key,
                    **report.to_dict(),
                }
            )
    return rows


def _size_label(size: int | None) -> str:
    return "full" if size is None else f"{size}x{size}"


def markdown_table(rows: list[dict]) -> str:
    """Resolution by protocol: accuracy % mean +- std (TAR @ FAR 1e-3 %)."""
    present = {r["protocol"] for r in rows}
    protocols = [p for p in PROTOCOLS if p in present]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    header = "| face size (inter-eye px) | " + " | ".join(protocols) + " |"
    lines = [header, "|" + "---|" * (len(protocols) + 1)]
    by_key = {(r["protocol"], r["size"]): r for r in rows}
    for size in sizes:
        eye = "" if size is None else f" ({inter_eye_distance(size):.1f})"
        cells = []
        for protocol in protocols:
            row = by_key.get((protocol, size))
            cells.append(
                "—"
                if row is None
                else f"{100 * row['accuracy']:.2f} ± {100 * row['accuracy_std']:.2f} "
                f"({100 * row['tar_far_1e_3']:.1f})"
            )
        lines.append(f"| {_size_label(size)}{eye} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_accuracy(rows: list[dict], path: Path, title: str) -> None:
    """Accuracy against resolution, a line per protocol (full resolution drawn at 150 px)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        points = sorted(
            (150 if r["size"] is None else r["size"], 100 * r["accuracy"], 100 * r["accuracy_std"])
            for r in rows
            if r["protocol"] == protocol
        )
        xs, ys, es = zip(*points, strict=True)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=protocol)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("face chip size (px; 150 = full resolution)")
    ax.set_ylabel("verification accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(
    out_dir: Path,
    rows: list[dict],
    config: BenchmarkConfig,
    data: PairData,
    meta: dict,
    baseline_rows: list[dict] | None = None,
) -> dict[str, Path]:
    """results.json, results.md, accuracy.png and calibration.json in ``out_dir``.

    With ``baseline_rows`` (the gallery encoder on the probe side too, same pairs) the
    markdown and the plot compare the two, with paired per-fold gains.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    compared = comparison_rows(baseline_rows, rows) if baseline_rows else None
    summary = {
        "config": asdict(config),
        "pairs_evaluated": len(data.pairs),
        "pairs_skipped": data.skipped_pairs,
        "images_failed": data.failures,
        "alignment_fallbacks": data.fallbacks,
        **meta,
        "rows": rows,
    }
    if baseline_rows:
        summary["baseline_rows"] = baseline_rows
        summary["comparison"] = compared
    paths = {
        "json": out_dir / "results.json",
        "markdown": out_dir / "results.md",
        "plot": out_dir / "accuracy.png",
        "calibration": out_dir / "calibration.json",
    }
    paths["json"].write_text(json.dumps(summary, indent=2))
    probe, gallery = rows[0]["probe_encoder"], rows[0]["gallery_encoder"]
    title = f"LFW {config.view} ({config.degradation})"
    if baseline_rows:
        names = (meta.get("baseline_name", gallery), meta.get("encoder_name", probe))
        text = comparison_table(compared, *names) + "\n\n" + markdown_table(baseline_rows)
        paths["markdown"].write_text(text + "\n")
        plot_comparison(baseline_rows, rows, paths["plot"], title, names)
    else:
        paths["markdown"].write_text(markdown_table(rows) + "\n")
        plot_accuracy(rows, paths["plot"], f"{title}: {probe}")
    calibration = {
        "gallery_encoder": gallery,
        "probe_encoder": probe,
        "view": config.view,
        "flip": config.flip,
        "degradation": config.degradation,
        "thresholds": {
            f"{r['protocol']}@{'full' if r['size'] is None else r['size']}": r["threshold"]
            for r in rows
        },
    }
    paths["calibration"].write_text(json.dumps(calibration, indent=2))
    return paths


@dataclass
class VerificationRun:
    """What ``run_verification`` measured: the probe encoder's rows, the gallery encoder's own
    rows on the probe side (the baseline, or None) and the pairs' data (skips, fallbacks)."""

    rows: list[dict]
    baseline_rows: list[dict] | None
    data: PairData


def run_verification(
    lfw: LFW,
    pairs: list[Pair],
    gallery_encoder: FaceEncoder,
    probe_encoder: FaceEncoder | dict[int, FaceEncoder],
    config: BenchmarkConfig,
    baseline: bool = True,
    workers: int = 1,
) -> VerificationRun:
    """The verification benchmark of ``probe_encoder`` (one encoder, or one per View 2 fold)
    against ``gallery_encoder``'s HR gallery on ``pairs``. With ``baseline`` (and a probe
    encoder other than the gallery's) the gallery encoder is also scored on the probe side, on
    the same pairs; the student then serves only the low sizes, the baseline's full-size row
    being the HR-HR reference."""
    align = AlignSettings(cnn_fallback=config.cnn_fallback)
    data = load_pair_data(lfw, pairs, workers=workers, settings=align)
    baseline_rows = None
    if baseline and probe_encoder is not gallery_encoder:
        baseline_rows = evaluate(data, gallery_encoder, gallery_encoder, config)
        low = [s for s in config.sizes if s is not None]
        config = replace(config, sizes=low)
    rows = evaluate(data, gallery_encoder, probe_encoder, config)
    return VerificationRun(rows, baseline_rows, data)


def paired_gain(baseline: dict, candidate: dict) -> dict:
    """Per-fold accuracy differences (candidate - baseline) on the same folds: mean, std,
    folds won and their count (a paired comparison: both sides score the same trials)."""
    base = np.asarray(baseline["fold_accuracies"])
    cand = np.asarray(candidate["fold_accuracies"])
    if base.shape != cand.shape:
        raise ValueError(
            f"the baseline has {len(base)} folds and the candidate {len(cand)}: "
            "compare results on the same folds"
        )
    diff = cand - base
    return {
        "gain": float(diff.mean()),
        "gain_std": float(diff.std()),
        "folds_won": int((diff > 0).sum()),
        "folds": int(len(diff)),
    }


def comparison_rows(baseline_rows: list[dict], rows: list[dict]) -> list[dict]:
    """For every (protocol, size) both were scored on: both accuracies and the paired gain."""
    base = {(r["protocol"], r["size"]): r for r in baseline_rows}
    out = []
    for row in rows:
        key = (row["protocol"], row["size"])
        if key not in base:
            continue
        out.append(
            {
                "protocol": row["protocol"],
                "size": row["size"],
                "baseline_accuracy": base[key]["accuracy"],
                "accuracy": row["accuracy"],
                "baseline_tar_far_1e_3": base[key]["tar_far_1e_3"],
                "tar_far_1e_3": row["tar_far_1e_3"],
                **paired_gain(base[key], row),
            }
        )
    return out


def gain_text(gain: Mapping) -> str:
    """A paired gain (``paired_gain``'s keys) in points: ``+1.52 ± 1.04``."""
    return f"{100 * gain['gain']:+.2f} ± {100 * gain['gain_std']:.2f}"


def comparison_table(compared: list[dict], baseline_name: str, name: str) -> str:
    """Markdown: per size and protocol, baseline vs candidate accuracy (TAR@FAR=1e-3) and the
    paired per-fold gain in points (mean +- std, folds won)."""
    lines = [
        f"| protocol | face size | {baseline_name} | {name} | gain (points, paired) |",
        "|---|---|---|---|---|",
    ]
    for row in compared:
        lines.append(
            f"| {row['protocol']} | {_size_label(row['size'])} "
            f"| {100 * row['baseline_accuracy']:.2f} ({100 * row['baseline_tar_far_1e_3']:.1f}) "
            f"| {100 * row['accuracy']:.2f} ({100 * row['tar_far_1e_3']:.1f}) "
            f"| {gain_text(row)} ({row['folds_won']}/{row['folds']}) |"
        )
    return "\n".join(lines)


def plot_comparison(
    baseline_rows: list[dict], rows: list[dict], path: Path, title: str, names: tuple[str, str]
) -> None:
    """Accuracy against probe size: the baseline dashed, the candidate solid, per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for rows_, style, name in ((baseline_rows, "--", names[0]), (rows, "-", names[1])):
        for colour, protocol in zip(("C0", "C1"), ("hr-lr", "lr-lr"), strict=True):
            points = sorted(
                (r["size"], 100 * r["accuracy"])
                for r in rows_
                if r["protocol"] == protocol and r["size"] is not None
            )
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, color=colour, marker="o", label=f"{name} {protocol}")
    ax.set_xscale("log", base=2)
    ax.set_xticks([8, 12, 16, 20, 24, 32], ["8", "12", "16", "20", "24", "32"])
    ax.set_xlabel("probe face size (px)")
    ax.set_ylabel("verification accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
