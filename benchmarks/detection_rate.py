"""Detection rate and speed of MTCNN and dlib's HOG detector on LFW, at full size and with the
whole image scaled down so the face is about 32, 24, 16 and 12 px wide.

LFW faces are about ``FACE_PX`` = 110 px wide in the 250x250 images and centred, so for a target
width ``t`` the image is area-resized to ``round(250 * t / 110)`` px. An image counts as detected
when some box has its centre within ``0.25 t`` of the image centre and a width between
``0.4 t`` and ``1.6 t`` (the subject, not a background face). Speed: images per second of
``detect`` time (one subject face each), single images, not batched.

    python benchmarks/detection_rate.py --limit 500

With ``--out rows.json`` every finished (detector, size) row is written at once, and a re-run
with the same settings skips the rows already there: an interrupted hour-long run resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lrface.data.detected import is_subject, lfw_at_width
from lrface.machine import describe_machine


def is_hit(faces, side: int, target: float) -> bool:
    """Some face is the subject (``lrface.data.detected.is_subject``), not a background one."""
    return any(is_subject(face, (side, side), target) for face in faces)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", default=None, help="LFW root (default: lrface.paths lookup)")
    parser.add_argument(
        "--limit", type=int, default=None, help="images, evenly spread (default: all 13,233)"
    )
    parser.add_argument(
        "--sizes", default="full,32,24,16,12", help="face widths in px; 'full' = as is"
    )
    parser.add_argument("--detectors", default="mtcnn,dlib", help="comma-separated: mtcnn, dlib")
    parser.add_argument("--min-face", type=float, default=12, help="MTCNN smallest face (px)")
    parser.add_argument(
        "--pyramid", default="area", help="MTCNN pyramid: area (reference) or cascade (watch)"
    )
    parser.add_argument(
        "--dlib-upsample", type=int, default=1, help="dlib: image doublings before the scan"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", type=Path, help="rows JSON, written as rows finish (resumes)")
    args = parser.parse_args()

    import cv2
    import numpy as np
    import torch
    from tqdm import tqdm

    from lrface.data.images import load_rgb
    from lrface.paths import resolve_lfw

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    paths = sorted(resolve_lfw(args.lfw).glob("*/*.jpg"))
    if args.limit is not None and args.limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.limit).round().astype(int)]
    sizes = [None if s.strip() == "full" else int(s) for s in args.sizes.split(",")]
    detectors = {}
    for name in args.detectors.split(","):
        if name == "mtcnn":
            from lrface.detect.mtcnn import MTCNN

            detectors[name] = MTCNN(min_face=args.min_face, pyramid=args.pyramid)
        elif name == "dlib":
            from lrface.detect.dlib_detector import DlibDetector

            detectors[name] = DlibDetector(upsample=args.dlib_upsample)
        else:
            parser.error(f"unknown detector {name!r}")

    settings = {
        "images": len(paths),
        "limit": args.limit,
        "min_face": args.min_face,
        "dlib_upsample": args.dlib_upsample,
    }
    if args.pyramid != "area":  # rows saved before the option resume as they were
        settings["pyramid"] = args.pyramid
    rows = []
    if args.out is not None and args.out.is_file():
        saved = json.loads(args.out.read_text())
        if saved["settings"] != settings:
            parser.error(f"{args.out} holds rows of other settings: {saved['settings']}")
        rows = [tuple(row) for row in saved["rows"]]
        print(f"resuming: {len(rows)} rows from {args.out}", flush=True)
    done = {(row[0], row[1]) for row in rows}
    images = [load_rgb(p) for p in paths]
    for size in sizes:
        target, scaled = lfw_at_width(images, size)
        side = scaled[0].shape[0]
        size_label = "full (~110)" if size is None else str(size)
        for name, det in detectors.items():
            if (name, size_label) in done:
                continue
            hits, spent = 0, 0.0
            label = f"{name} {side}px"
            for img in tqdm(scaled, desc=label, unit="img", disable=args.no_progress):
                start = time.perf_counter()
                faces = det.detect(img)
                spent += time.perf_counter() - start
                hits += is_hit(faces, side, target)
            rows.append((name, size_label, side, hits, spent))
            print(f"  {name} {side}px: {hits}/{len(scaled)} in {spent:.1f} s", flush=True)
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))

    print(
        f"\nLFW detection rate, {len(paths)} images (evenly spread over the sorted list); "
        f"MTCNN min face {args.min_face:g} px, thresholds 0.6/0.7/0.7, factor 0.709, "
        f"{args.pyramid} pyramid; "
        f"dlib HOG upsample {args.dlib_upsample}.\n\nMachine: {describe_machine()}\n"
    )
    print("| detector | face px | image px | detected | rate | faces/s |")
    print("|---|---|---|---|---|---|")
    for name, label, side, hits, spent in rows:
        print(
            f"| {name} | {label} | {side} | {hits}/{len(paths)} | {100 * hits / len(paths):.1f}% | "
            f"{len(paths) / spent:.1f} |"
        )


if __name__ == "__main__":
    main()
