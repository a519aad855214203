"""Does the served search score as the open-set protocol measures it? One run per encoder.

    python benchmarks/openset_served.py --encoders lrface-lr-v2:16,dlib-resnet-torch:full

For each ``encoder:size``: the 814 templates of the ``calibrate-openset`` split go into a
``Gallery`` scoring by AS-norm against the *shipped* cohort (``lrface.search.cohort``), every
probe is searched through ``Gallery.search`` (faiss's best ``RERANK`` raw candidates rescored),
and its top-1 name and score are compared with the protocol's full score matrix
(``lrface.eval.openset_lfw.normalized_rows`` over every template), whose FNIR / FPIR at FPIR 1%
are printed beside.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lrface.calibration import FaceRef
from lrface.data.lfw import LFW
from lrface.eval.openset_lfw import normalized_rows, openset_embeddings
from lrface.models.factory import create_encoder
from lrface.search.cohort import load_cohort
from lrface.search.gallery import Gallery
from lrface.search.normalize import Normalizer, normalize_scores, side_stats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoders", default="lrface-lr-v2:16,dlib-resnet-torch:full")
    parser.add_argument("--lfw", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lfw = LFW(args.lfw)
    teacher = create_encoder("dlib-resnet-torch")
    for spec in args.encoders.split(","):
        name, label = spec.split(":")
        size = None if label == "full" else int(label)
        encoder = create_encoder(name)
        split, _, templates, probes = openset_embeddings(lfw, teacher, encoder, [size])
        cohort = load_cohort(name)
        gallery = Gallery(teacher.cache_key, teacher.dim)
        for person, template in zip(split.gallery_names, templates, strict=True):
            gallery.add(person, template[None])
        gallery.use_scoring(Normalizer("asnorm", {encoder.cache_key: cohort}))
        queries = probes[size]
        served = gallery.search(queries, 1, [FaceRef(encoder.cache_key, size)] * len(queries))
        band = list(cohort.bands.values())[cohort.band_index(size)]
        full = normalize_scores(
            queries @ templates.T, "asnorm", side_stats(queries, cohort.gallery),
            side_stats(templates, band),
        )  # fmt: skip
        names = np.array(split.gallery_names, dtype=object)[full.argmax(1)]
        differ = sum(n != s[0].name for n, s in zip(names, served, strict=True))
        gap = np.abs(full.max(1) - np.array([s[0].score for s in served])).max()
        (row,) = normalized_rows(
            templates, queries, split, cohort.gallery, band, size, [0.01], ("asnorm",)
        )
        print(
            f"{name} at {label}: top-1 differs in {differ} of {len(queries)} searches, largest "
            f"score difference {gap:.1e}; protocol FNIR {100 * row.fnir:.1f}% at FPIR "
            f"{100 * row.fpir:.2f}% (target 1%)"
        )


if __name__ == "__main__":
    main()
