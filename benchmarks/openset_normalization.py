"""Open-set search with raw and cohort-normalized scores, as rows of one run.

    python benchmarks/openset_normalization.py --encoders dlib-resnet-torch,lrface-lr-v2 \
        --sizes 8,12,16,20,full --fpirs 0.01,0.1 --out out/openset-normalization.json

The ``calibrate-openset`` protocol (``lrface.eval.openset``: 814 people enrolled with one
full-size photo each by the teacher, thresholds set on half of the people, rates on the other
half) for every scoring of ``lrface.search.normalize.METHODS``, against the cohort that
``lrface.eval.cohort`` builds (faces of nobody in View 2; the probe encoder's embeddings at the
probe's size on one side, the teacher's full-size ones on the other). A student's full-size
row is left out: full-size faces go to the teacher.

``--templates single,mirrored`` measures both ways of making enrolled templates (the cohort's
gallery side made the same way) in one run, and adds the rows of a gallery enrolled with
single-pass templates searched by this release: against the mirrored cohort, judged by the
thresholds set on mirrored templates. ``--probes``: ``served`` (default) embeds probes as a
still image's search does (the teacher's mirrored, ``SEARCH_PROBE_FLIP``; a student's not),
``single`` embeds every probe once, ``mirrored`` mirrors every probe and the cohort's probe
side too (not served).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lrface.data.lfw import LFW
from lrface.eval.cohort import DEFAULT_SIZE, cohort_chips, embed_cohort
from lrface.eval.openset import evaluate_scores
from lrface.eval.openset_lfw import normalized_markdown, normalized_rows, openset_embeddings
from lrface.machine import save_measurement
from lrface.models.factory import create_encoder
from lrface.search.normalize import DEFAULT_TOP_K, METHODS, normalize_scores, side_stats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoders", default="dlib-resnet-torch,lrface-lr-v2")
    parser.add_argument("--sizes", default="8,12,16,20,full")
    parser.add_argument("--fpirs", default="0.01,0.1")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--cohort-size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    parser.add_argument(
        "--templates",
        default="mirrored",
        help="single, mirrored or both (single,mirrored): enrolled templates embedded once, or "
        "averaged with the mirrored face (TEMPLATE_FLIP, what enrolment does); the cohort's "
        "gallery side made the same way",
    )
    parser.add_argument(
        "--probes",
        choices=("served", "single", "mirrored"),
        default="served",
        help="served: as a still image's search embeds them; single: every probe once; "
        "mirrored: every probe and the cohort's probe side averaged with the mirror image",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lfw", default=None)
    parser.add_argument("--out", type=Path, default=Path("out/openset-normalization.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    lfw = LFW(args.lfw)
    sizes = [None if s == "full" else int(s) for s in args.sizes.split(",")]
    fpirs = [float(f) for f in args.fpirs.split(",")]
    methods = tuple(args.methods.split(","))
    templates = [{"single": False, "mirrored": True}[t] for t in args.templates.split(",")]
    chipsets, cohort_info = cohort_chips(lfw, None, args.cohort_size, args.seed)
    report = {"cohort": cohort_info, "top_k": args.top_k, "encoders": {}}
    for name in args.encoders.split(","):
        probe_encoder = create_encoder(name)
        gallery_encoder = (
            create_encoder(probe_encoder.teacher) if probe_encoder.teacher else probe_encoder
        )
        own = [s for s in sizes if s is not None or not probe_encoder.teacher]
        made = {}
        for mirrored in templates:
            probe_flip = {"served": None, "single": False, "mirrored": True}[args.probes]
            split, dropped, gallery, probes = openset_embeddings(
                lfw, gallery_encoder, probe_encoder, own, args.seed, template_flip=mirrored,
                probe_flip=probe_flip,
            )  # fmt: skip
            cohort_gallery, bands = embed_cohort(
                chipsets, gallery_encoder, probe_encoder, tuple(own), template_flip=mirrored,
                probe_flip=args.probes == "mirrored",
            )  # fmt: skip
            rows = []
            for size in own:
                rows += normalized_rows(
                    gallery, probes[size], split, cohort_gallery, bands[size], size, fpirs,
                    methods, args.top_k,
                )  # fmt: skip
            kind = ("mirrored" if mirrored else "single") + f" templates, {args.probes} probes"
            print(f"\n## {name}, {kind}: {len(split.gallery)} enrolled, {dropped} unusable\n")
            print(normalized_markdown(rows))
            report["encoders"][f"{name} {kind}" if len(templates) > 1 else name] = {
                "probe_encoder": probe_encoder.cache_key,
                "gallery_encoder": gallery_encoder.cache_key,
                "templates": kind,
                "enrolled": len(split.gallery),
                "rows": [r.to_dict() for r in rows],
            }
            made[mirrored] = (split, gallery, probes, cohort_gallery, bands, rows)
        if len(made) == 2:
            rows = upgraded_gallery_rows(made, own, fpirs, methods, args.top_k)
            print(f"\n## {name}: single-pass templates judged by mirrored templates' thresholds\n")
            print(normalized_markdown(rows))
            report["encoders"][f"{name} single, mirrored thresholds"] = {
                "probe_encoder": probe_encoder.cache_key,
                "gallery_encoder": gallery_encoder.cache_key,
                "templates": "single, thresholds and cohort of mirrored",
                "rows": [r.to_dict() for r in rows],
            }
    save_measurement(report, args.out, started)


def upgraded_gallery_rows(made: dict, sizes, fpirs, methods, top_k: int) -> list:
    """A gallery enrolled with single-pass templates, searched after the upgrade: scored
    against the mirrored cohort (probe side; its own gallery-side statistics are recomputed
    for the new cohort) and judged by the thresholds set on mirrored templates; rates on the
    held-out half, as every row."""
    split, single, probes, _, bands, _ = made[False]
    _, _, _, cohort_gallery, _, mirrored_rows = made[True]
    thresholds = {(r.size, r.method, r.target_fpir): r.threshold for r in mirrored_rows}
    rows = []
    for size in sizes:
        raw = probes[size] @ single.T
        probe_stats = side_stats(probes[size], cohort_gallery, top_k)
        gallery_stats = side_stats(single, bands[size], top_k)
        for method in (m for m in methods if m != "centre"):
            scores = normalize_scores(raw, method, probe_stats, gallery_stats)
            for target in fpirs:
                threshold = thresholds[(size, method, target)]
                rows.append(
                    evaluate_scores(scores, split.gallery_names, split, target, size, method,
                                    threshold)
                )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
