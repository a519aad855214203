"""Parity of the PyTorch teacher (``lrface.models.dlib_resnet``) with dlib on LFW chips.

The first ``--count`` images of LFW's sorted file list are aligned by the project's aligner
(``lrface.data.chips.aligned_chips``: dlib frontal detector with one upsample, 5-point model,
``get_face_chip(size=150, padding=0.25)``; chips are cached). dlib's own
``face_recognition_model_v1`` and the port embed the same chips; printed per variant (the
faithful module, and the fused channels_last copy that the registered encoder runs): the cosine
between port and dlib descriptors (min / mean / count below 0.9999) and the largest absolute
difference of the raw 128-d vectors.

    python benchmarks/teacher_parity.py --count 500
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lrface.data.chips import aligned_chips
from lrface.models.dlib_resnet import fuse_for_inference, load_dlib_resnet
from lrface.models.dlib_teacher import RECOGNITION_MODEL, model_file
from lrface.paths import resolve_lfw

THRESHOLD = 0.9999


def lfw_chips(lfw: str | None, count: int) -> tuple[np.ndarray, list[str], int]:
    """Chips of the first ``count`` LFW images (sorted relative paths) that align.

    Returns the chips, their relative paths and how many of them came from the aligner's
    centre fallback (no face detected).
    """
    root = resolve_lfw(lfw)
    relpaths = sorted(str(p.relative_to(root)) for p in root.glob("*/*.jpg"))[:count]
    chipset = aligned_chips(root, relpaths, progress=True)
    for relpath, reason in chipset.failures.items():
        print(f"skipped {relpath}: {reason}")
    return chipset.chips, chipset.relpaths, len(chipset.fallbacks)


def dlib_descriptors(chips: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """dlib's own 128-d descriptors of aligned 150x150 chips."""
    import dlib

    recognizer = dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL)))
    out = [
        np.asarray(recognizer.compute_face_descriptor(list(chips[i : i + batch_size])))
        for i in range(0, len(chips), batch_size)
    ]
    return np.concatenate(out).astype(np.float32)


def torch_descriptors(module: torch.nn.Module, chips: np.ndarray, batch_size: int = 64):
    """The port's raw descriptors (float RGB in [0, 255], as the input contract says)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(chips), batch_size):
            x = torch.from_numpy(chips[i : i + batch_size]).permute(0, 3, 1, 2).float()
            out.append(module(x).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", default=None, help="LFW root (default: lrface.paths lookup)")
    parser.add_argument("--count", type=int, default=500, help="LFW images to use (default 500)")
    args = parser.parse_args()

    chips, relpaths, fallbacks = lfw_chips(args.lfw, args.count)
    print(f"{len(chips)} chips ({fallbacks} from the aligner's centre fallback)")
    start = time.perf_counter()
    reference = dlib_descriptors(chips)
    print(f"dlib: {time.perf_counter() - start:.1f} s")
    model = load_dlib_resnet()
    rows, notes = [], []
    for name, module in (("DlibResNet", model), ("fused channels_last", fuse_for_inference(model))):
        ours = torch_descriptors(module, chips).astype(np.float64)
        ref = reference.astype(np.float64)
        cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
        rows.append(
            f"| {name} | {len(chips)} | {cos.min():.10f} | {cos.mean():.10f} | "
            f"{1 - cos.min():.1e} | {int((cos < THRESHOLD).sum())} | "
            f"{np.abs(ours - ref).max():.2e} |"
        )
        notes.append(f"{name}: lowest cosine on {relpaths[int(cos.argmin())]}")
    print(
        f"\n| variant | chips | min cosine | mean cosine | 1 - min cosine | below {THRESHOLD} "
        "| max abs diff |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
