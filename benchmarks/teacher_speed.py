"""Throughput of the PyTorch teacher against dlib, same run, same LFW chips.

Chips as in ``teacher_parity.py`` (first ``--count`` LFW images, sorted, project aligner).
Each implementation embeds the chips at batch sizes 1 and 64; a pass at batch 1 uses the first
``--count-b1`` chips (dlib is slow there), a pass at batch 64 all of them. Timed: uint8 chips
in, raw descriptors back on the host (conversion and device copies included). Every cell is
the median over ``--trials`` passes, interleaved between implementations so that load from
other processes hits all of them alike; the machine's load average is printed with the table.

Rows: dlib (``face_recognition_model_v1``, CPU only), ``DlibResNet`` as loaded, the fused
channels_last copy that the registered ``dlib-resnet-torch`` encoder runs, and (CPU runs) the
ONNX export of ``DlibResNet`` in ONNX Runtime with as many intra-op threads as torch uses.
Thread count matters a lot on a shared machine: compare ``--threads 1`` with the default.

    python benchmarks/teacher_speed.py
    python benchmarks/teacher_speed.py --device cuda --count 512
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from teacher_parity import lfw_chips

from lrface.machine import cpu_model
from lrface.models.dlib_resnet import fuse_for_inference, load_dlib_resnet
from lrface.models.dlib_teacher import RECOGNITION_MODEL, model_file
from lrface.models.export import export_onnx

BATCH_SIZES = (1, 64)


def dlib_runner() -> Callable[[np.ndarray], np.ndarray]:
    import dlib

    recognizer = dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL)))
    return lambda batch: np.asarray(recognizer.compute_face_descriptor(list(batch)))


def torch_runner(module: torch.nn.Module, device: str) -> Callable[[np.ndarray], np.ndarray]:
    module = module.to(device).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float()
            return module(x).cpu().numpy()

    return run


def onnx_runner(module: torch.nn.Module, folder: str) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    path = export_onnx(module, os.path.join(folder, "dlib_resnet.onnx"))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        return session.run(None, {name: x})[0]

    return run


def faces_per_second(run: Callable[[np.ndarray], np.ndarray], chips: np.ndarray, bs: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(chips), bs):
        run(chips[i : i + bs])
    return len(chips) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", default=None, help="LFW root (default: lrface.paths lookup)")
    parser.add_argument("--count", type=int, default=128, help="chips for batch 64 (default 128)")
    parser.add_argument("--count-b1", type=int, default=32, help="chips for batch 1 (default 32)")
    parser.add_argument("--trials", type=int, default=3, help="passes per cell (median shown)")
    parser.add_argument("--device", default="cpu", help="torch device for the port: cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)

    chips, _, _ = lfw_chips(args.lfw, args.count)
    subsets = {1: chips[: args.count_b1], 64: chips}
    model = load_dlib_resnet()
    runners = {
        "dlib (CPU)": dlib_runner(),
        f"DlibResNet ({args.device})": torch_runner(model, args.device),
        f"fused channels_last ({args.device}), the encoder": torch_runner(
            fuse_for_inference(model), args.device
        ),
    }
    onnx_dir = tempfile.TemporaryDirectory()
    if args.device == "cpu":
        runners["onnxruntime (cpu)"] = onnx_runner(model, onnx_dir.name)
    load_before = os.getloadavg()
    for run in runners.values():  # warm-up: allocations, kernel selection, CUDA context
        run(chips[:1])
        run(chips[:64])
    results: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.trials):
        for name, run in runners.items():
            for bs in BATCH_SIZES:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                speed = faces_per_second(run, subsets[bs], bs)
                results.setdefault((name, bs), []).append(speed)
    load_after = os.getloadavg()
    onnx_dir.cleanup()

    gpu = f", GPU {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    import dlib

    print(
        f"\nMachine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} torch threads), dlib {dlib.__version__}{gpu}; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(
        f"Chips: {len(subsets[1])} at batch 1, {len(subsets[64])} at batch 64; "
        f"median of {args.trials} passes (min-max in brackets)\n"
    )
    dlib_name = next(iter(runners))
    print("| implementation | batch 1 (faces/s) | batch 64 (faces/s) | x dlib at batch 64 |")
    print("|---|---|---|---|")
    for name in runners:
        cells = []
        for bs in BATCH_SIZES:
            runs = results[(name, bs)]
            cells.append(f"{statistics.median(runs):.1f} [{min(runs):.1f}-{max(runs):.1f}]")
        ratio = statistics.median(results[(name, 64)]) / statistics.median(results[(dlib_name, 64)])
        print(f"| {name} | {cells[0]} | {cells[1]} | {ratio:.1f} |")


if __name__ == "__main__":
    main()
