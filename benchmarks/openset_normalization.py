"""Open-set search with raw and cohort-normalized scores, as rows of one run.

    python benchmarks/openset_normalization.py --encoders dlib-resnet-torch,lrface-lr-v2 \
        --sizes 8,12,16,20,full --fpirs 0.01,0.1 --out out/openset-normalization.json

The ``calibrate-openset`` protocol (``lrface.eval.openset``: 814 people enrolled with one
full-size photo each by the teacher, thresholds set on half of the people, rates on the other
half) for every scoring of ``lrface.search.normalize.METHODS``, against the cohort that
``lrface.eval.cohort`` builds (faces of nobody in View 2; the probe encoder's embeddings at the
probe's size on one side, the teacher's full-size ones on the other). A student's full-size
row is left out: full-size faces go to the teacher.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lrface.data.lfw import LFW
from lrface.eval.cohort import DEFAULT_SIZE, cohort_chips, embed_cohort
from lrface.eval.openset_lfw import normalized_markdown, normalized_rows, openset_embeddings
from lrface.machine import save_measurement
from lrface.models.factory import create_encoder
from lrface.search.normalize import DEFAULT_TOP_K, METHODS


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
    chipsets, cohort_info = cohort_chips(lfw, None, args.cohort_size, args.seed)
    report = {"cohort": cohort_info, "top_k": args.top_k, "encoders": {}}
    for name in args.encoders.split(","):
        probe_encoder = create_encoder(name)
        gallery_encoder = (
            create_encoder(probe_encoder.teacher) if probe_encoder.teacher else probe_encoder
        )
        own = [s for s in sizes if s is not None or not probe_encoder.teacher]
        split, dropped, gallery, probes = openset_embeddings(
            lfw, gallery_encoder, probe_encoder, own, args.seed
        )
        cohort_gallery, bands = embed_cohort(chipsets, gallery_encoder, probe_encoder, tuple(own))
        rows = []
        for size in own:
            rows += normalized_rows(
                gallery, probes[size], split, cohort_gallery, bands[size], size, fpirs, methods,
                args.top_k,
            )  # fmt: skip
        print(f"\n## {name}: {len(split.gallery)} enrolled, {dropped} images unusable\n")
        print(normalized_markdown(rows))
        report["encoders"][name] = {
            "probe_encoder": probe_encoder.cache_key,
            "gallery_encoder": gallery_encoder.cache_key,
            "enrolled": len(split.gallery),
            "rows": [r.to_dict() for r in rows],
        }
    save_measurement(report, args.out, started)


if __name__ == "__main__":
    main()
