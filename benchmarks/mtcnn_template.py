"""Derive the MTCNN landmark template of lrface's 150x150 chip (``lrface.detect.align``).

Every ``--step``-th LFW image (sorted paths) is aligned by the benchmark's dlib aligner
(``DlibAligner``: frontal detector + 5-point model + ``get_face_chip(size=150, padding=0.25)``);
images where dlib found no face are skipped. MTCNN then runs on each chip, placed in the middle
of a black canvas (``--margin`` px each side) so the face is not cut by the frame, and the five
landmarks of the detection nearest the chip centre are averaged, in the chip's continuous
coordinates (pixel ``j`` spans ``[j, j+1)``). Prints the mean, the per-point spread and the
constant to paste into ``align.py``.

    python benchmarks/mtcnn_template.py --limit 400
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lrface.data.images import load_rgb
from lrface.detect.dlib_align import AlignSettings, DlibAligner
from lrface.detect.mtcnn import MTCNN
from lrface.paths import resolve_lfw

NAMES = (
    "eye (image left)",
    "eye (image right)",
    "nose",
    "mouth (image left)",
    "mouth (image right)",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", default=None, help="LFW root (default: lrface.paths lookup)")
    parser.add_argument("--limit", type=int, default=400, help="images used")
    parser.add_argument("--step", type=int, default=29, help="take every STEP-th LFW image")
    parser.add_argument("--margin", type=int, default=40, help="black border around the chip")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    root = resolve_lfw(args.lfw)
    paths = sorted(root.glob("*/*.jpg"))[:: args.step][: args.limit]
    aligner = DlibAligner(AlignSettings(centre_fallback=False))
    detector = MTCNN(min_face=20)
    points, no_dlib, no_mtcnn = [], 0, 0
    start = time.perf_counter()
    for path in paths:
        result = aligner.align(load_rgb(path))
        if result.chip is None:
            no_dlib += 1
            continue
        m = args.margin
        canvas = np.zeros((150 + 2 * m, 150 + 2 * m, 3), np.uint8)
        canvas[m : m + 150, m : m + 150] = result.chip
        faces = detector.detect(canvas)
        if not faces:
            no_mtcnn += 1
            continue
        centre = np.array([m + 75.0, m + 75.0])
        face = min(faces, key=lambda f: float(np.sum(((f.box[:2] + f.box[2:]) / 2 - centre) ** 2)))
        points.append(face.landmarks - m)
    pts = np.stack(points)
    mean, std = pts.mean(0), pts.std(0)
    print(
        f"{len(paths)} images, every {args.step}th: {len(pts)} used, {no_dlib} without a dlib "
        f"face, {no_mtcnn} without an MTCNN face; {time.perf_counter() - start:.0f} s"
    )
    print("| point | x | y | std x | std y |\n|---|---|---|---|---|")
    for name, (x, y), (sx, sy) in zip(NAMES, mean, std, strict=True):
        print(f"| {name} | {x:.2f} | {y:.2f} | {sx:.2f} | {sy:.2f} |")
    rows = ", ".join(f"[{x:.2f}, {y:.2f}]" for x, y in mean)
    print(f"\nMTCNN_TEMPLATE_150 = np.array([{rows}], dtype=np.float64)")


if __name__ == "__main__":
    main()
