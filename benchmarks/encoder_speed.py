"""Probe-side throughput of encoders on LR faces: the teacher against trained students.

What a deployment pays per probe: ``FaceEncoder.embed`` on ``s x s`` uint8 chips (the
encoder's own upsampling to its input size included), raw embeddings back, no flip. Chips are
the first ``--count`` LFW images (sorted, project aligner) degraded to ``--size`` px with the
benchmark's area kernel. Each cell is the median of ``--trials`` passes, interleaved between
encoders so that load from other processes hits all of them alike; the load average is
printed with the table. Also counts each encoder's parameters.

    python benchmarks/encoder_speed.py dlib-resnet-torch runs/s7/ens3/member-0 runs/s7/ens3

``--unfolded`` adds each student run as trained, without the inference folding of its dlib
ResNets (``models.checkpoint.fold_for_inference``), to measure what the folding gives;
``--onnx`` adds each encoder under ONNX Runtime (``models.onnx_encoder``).
``--input-sizes 128,112`` adds the teacher-init network (the teacher's weights, folded as
shipped) run at those input sizes instead of 150 px: the speed side of a smaller student
input (its accuracy needs a student trained at that size).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from teacher_parity import lfw_chips

from lrface.data.degrade import EvalDegradation
from lrface.machine import cpu_model
from lrface.models.checkpoint import TEACHER_ENCODER, fold_for_inference
from lrface.models.encoder import FaceEncoder, TorchEncoder
from lrface.models.factory import create_encoder
from lrface.models.onnx_encoder import OnnxEncoder, with_runtime
from lrface.models.students import create_student


def faces_per_second(encoder: FaceEncoder, chips: np.ndarray) -> float:
    start = time.perf_counter()
    encoder.embed(chips)
    return len(chips) / (time.perf_counter() - start)


def parameters(encoder: FaceEncoder) -> str:
    if isinstance(encoder, OnnxEncoder):
        return "(onnx)"
    if not isinstance(encoder, TorchEncoder):
        return "-"
    return f"{sum(p.numel() for p in encoder.module.parameters()) / 1e6:.2f}M"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("encoders", nargs="+", help="registered names or checkpoint dirs")
    parser.add_argument("--lfw", default=None, help="LFW root (default: lrface.paths lookup)")
    parser.add_argument("--count", type=int, default=512, help="probe chips (default 512)")
    parser.add_argument("--size", type=int, default=16, help="probe size in px (default 16)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--trials", type=int, default=5, help="passes per cell (median shown)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--unfolded",
        action="store_true",
        help="also time each student with its dlib ResNets unfolded (fold=False)",
    )
    parser.add_argument(
        "--onnx", action="store_true", help="also time each encoder under ONNX Runtime"
    )
    parser.add_argument(
        "--input-sizes", default=None, help="also the teacher-init network at these inputs"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    chips, _, _ = lfw_chips(args.lfw, args.count)
    probes = EvalDegradation(args.size)(chips)
    encoders = {name: create_encoder(name, batch_size=args.batch) for name in args.encoders}
    if args.unfolded:
        for name in [n for n in args.encoders if n != TEACHER_ENCODER]:
            encoders[f"{name} unfolded"] = create_encoder(name, batch_size=args.batch, fold=False)
    if args.onnx:
        for name in args.encoders:
            encoders[f"{name} onnx"] = with_runtime(encoders[name], "onnx")
    for size in [int(s) for s in args.input_sizes.split(",")] if args.input_sizes else []:
        network = fold_for_inference(create_student("teacher-init", input_size=size).eval())
        encoders[f"teacher-init at {size} px"] = TorchEncoder(
            network, name="teacher-init", input_size=size, dim=network.dim, batch_size=args.batch
        )
    for encoder in encoders.values():  # warm-up
        encoder.embed(probes[: args.batch])
    load_before = os.getloadavg()
    speeds: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(args.trials):
        for name, encoder in encoders.items():
            speeds[name].append(faces_per_second(encoder, probes))
    load_after = os.getloadavg()

    print(
        f"\nMachine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {len(probes)} probes at {args.size} px, batch {args.batch}, "
        f"median of {args.trials} passes (min-max in brackets)\n"
    )
    first = next(iter(encoders))
    base = statistics.median(speeds[first])
    print(f"| encoder | input px | parameters | faces/s | x {first} |")
    print("|---|---|---|---|---|")
    for name, encoder in encoders.items():
        runs = speeds[name]
        median = statistics.median(runs)
        print(
            f"| {name} ({encoder.name}) | {encoder.input_size} | {parameters(encoder)} | "
            f"{median:.0f} ({min(runs):.0f}-{max(runs):.0f}) | {median / base:.2f} |"
        )


if __name__ == "__main__":
    main()
