"""``hr-lr-detected`` on LFW pairs: encoders side by side on probes MTCNN found in the shrunk
whole image (protocol and conventions: ``lrface.eval.detected_verification``).

    python benchmarks/detected_pairs.py teacher=dlib-resnet-torch v2=lrface-lr-v2 \
        v3=out/lrface-lr-v3 --sizes 12,16,20 --out out/detected-clean.json

Each argument is ``LABEL=encoder`` (a registered name or a packaged student directory). The
gallery side is the teacher on full-resolution dlib chips (no flip unless ``--flip``, as
``lrface benchmark``) for every row, so the rows share
their trials; the table gives accuracy (TAR at FAR 1e-3 / 1e-4) and, from the second label
on, the paired per-fold gain over the first label. One thread; ~9 images/s for the detection
of a width (cached afterwards), one ResNet-29 pass per found probe and encoder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lrface.data.lfw import LFW
from lrface.eval.benchmark import load_pair_data
from lrface.eval.detected_verification import detected_report, detected_table
from lrface.machine import describe_machine
from lrface.models.checkpoint import TEACHER_ENCODER
from lrface.models.factory import create_encoder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("encoders", nargs="+", help="LABEL=encoder, the first is the baseline")
    parser.add_argument("--sizes", default="8,12,16,20", help="probe face widths (px)")
    parser.add_argument("--degradation", default="clean", help="camera preset of the probes")
    parser.add_argument("--folds", default=None, help="View 2 folds, e.g. 0,1,2 (all: omit)")
    parser.add_argument(
        "--flip", action="store_true", help="flip-average the HR gallery side (off, as benchmark)"
    )
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    labels = {}
    for spec in args.encoders:
        label, _, name = spec.partition("=")
        if not name:
            parser.error(f"{spec!r}: expected LABEL=encoder")
        labels[label] = create_encoder(name)
    started = time.perf_counter()
    lfw = LFW()
    pairs = lfw.view2()
    if args.folds is not None:
        chosen = {int(f) for f in args.folds.split(",")}
        pairs = [p for p in pairs if p.fold in chosen]
    data = load_pair_data(lfw, pairs)
    gallery = create_encoder(TEACHER_ENCODER)
    report = detected_report(lfw, data, sizes, gallery, labels, args.degradation, args.flip)
    report |= {"wall_s": round(time.perf_counter() - started, 1), "machine": describe_machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(detected_table(report))
    print(f"{report['wall_s']} s; {args.out}")


if __name__ == "__main__":
    main()
