"""Does MTCNN find the same landmarks for an image whatever else is in its batch?

Runs the detector (min face 12 px, as for LR probes and detected training faces) on the first
``--limit`` LFW images, shrunk so the face is ``--face-px`` wide, three ways: one batch of all,
two half batches, and one image at a time. Prints how many images' detections differ between
the ways and the largest landmark difference of the top face.

    python benchmarks/mtcnn_batch_invariance.py --limit 64 --face-px 24
"""

from __future__ import annotations

import argparse

import numpy as np

from lrface.data.detected import shrink_image
from lrface.data.images import load_rgb
from lrface.data.lfw import LFW
from lrface.detect.mtcnn import MTCNN


def landmark_gap(a, b) -> tuple[int, float]:
    """(images whose detections differ, largest top-face landmark difference in px)."""
    pairs = list(zip(a, b, strict=True))
    differ = sum(
        len(x) != len(y)
        or any(not np.allclose(f.landmarks, g.landmarks) for f, g in zip(x, y, strict=True))
        for x, y in pairs
    )
    gaps = [float(np.abs(x[0].landmarks - y[0].landmarks).max()) for x, y in pairs if x and y]
    return differ, max(gaps, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--face-px", type=int, default=24)
    args = parser.parse_args()
    lfw = LFW()
    relpaths = sorted(image.relpath for image in lfw.images())[: args.limit]
    smalls = [shrink_image(load_rgb(lfw.root / r), args.face_px) for r in relpaths]
    detector = MTCNN(min_face=12)
    whole = detector.detect_batch(smalls)
    half = len(smalls) // 2
    halves = detector.detect_batch(smalls[:half]) + detector.detect_batch(smalls[half:])
    single = [detector.detect(image) for image in smalls]
    for name, other in (("two halves", halves), ("one at a time", single)):
        differ, gap = landmark_gap(whole, other)
        print(f"one batch vs {name}: {differ} of {len(smalls)} differ, max gap {gap:.2f} px")


if __name__ == "__main__":
    main()
