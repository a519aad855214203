"""The LFW cross-resolution benchmark: encoders through every protocol at every resolution.

For each resolution s (``None`` = full), every image of the chosen pairs is aligned once
(cached), degraded by ``EvalDegradation(s)``, embedded (cached), and scored under the
protocols of ``lrface.eval.protocol``. The gallery side is always the gallery encoder at full
resolution; the probe side is the probe encoder at s (for the teacher baseline both are the
teacher; for a student, the gallery is its teacher and the probe the student).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
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
            probe_encoder, data, EvalDegradation(size, config.kernel), config.flip, progress
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
    out_dir: Path, rows: list[dict], config: BenchmarkConfig, data: PairData, meta: dict
) -> dict[str, Path]:
    """results.json, results.md, accuracy.png and calibration.json in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "config": asdict(config),
        "pairs_evaluated": len(data.pairs),
        "pairs_skipped": data.skipped_pairs,
        "images_failed": data.failures,
        "alignment_fallbacks": data.fallbacks,
        **meta,
        "rows": rows,
    }
    paths = {
        "json": out_dir / "results.json",
        "markdown": out_dir / "results.md",
        "plot": out_dir / "accuracy.png",
        "calibration": out_dir / "calibration.json",
    }
    paths["json"].write_text(json.dumps(summary, indent=2))
    paths["markdown"].write_text(markdown_table(rows) + "\n")
    plot_accuracy(rows, paths["plot"], f"LFW {config.view}: {rows[0]['probe_encoder']}")
    calibration = {
        "gallery_encoder": rows[0]["gallery_encoder"],
        "probe_encoder": rows[0]["probe_encoder"],
        "view": config.view,
        "flip": config.flip,
        "thresholds": {
            f"{r['protocol']}@{'full' if r['size'] is None else r['size']}": r["threshold"]
            for r in rows
        },
    }
    paths["calibration"].write_text(json.dumps(calibration, indent=2))
    return paths
