"""MTCNN variants measured against the reference detector: the ``cascade`` pyramid (OpenCV
uint8 ``INTER_AREA``, each level from the one before) and the upscaled pass (``min_face``
under 12), on a real scene and on LFW; and P-Net / R-Net / O-Net under ONNX Runtime.

    OMP_NUM_THREADS=1 python benchmarks/mtcnn_pyramid.py --limit 1000 --out out/mtcnn-pyramid.json

Real scene: every ``--every``-th frame of ``../shared/data/video/arcade-1080p.mp4`` at 1080p
and at 720p (INTER_AREA), ``--min-face 20``, detected whole by the ``area`` (reference) and
``cascade`` detectors. Faces are paired greedily by box IoU (>= 0.5, best first); reported:
faces of each, pairs, box IoU of the pairs (mean, 5th percentile), landmark distance of the
pairs in px and in face widths (mean, max), and the CPU seconds per frame of the pyramid alone
and of the whole detection (median of the frames).

LFW (``--limit`` images evenly spread over the sorted list, as ``detection_rate.py``): each
image whole and area-shrunk so the face is 32, 24, 16, 12 and 8 px wide (``--sizes``); the
detection rate of the subject face (``detection_rate.py``'s rule) for each detector: the
reference (``area``, ``min_face`` 12), ``cascade`` (``min_face`` 12) and the upscaled pass
(``cascade``, ``min_face`` 6); and the eye landmark error of each against the reference
detector's eyes on the full-size image, scaled to the small one (in face widths, images where
both found the subject).

ONNX Runtime (``--onnx``): each net exported once (dynamic batch and size), timed against
PyTorch (channels-last, as the detector runs it) on the inputs of one 1080p arcade frame: P-Net
on every ``cascade`` level, R-Net and O-Net on the crops that frame sends them (CPU seconds,
median of 5; one thread each).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from lrface.data.detected import FACE_PX, is_subject, lfw_at_width
from lrface.data.images import load_rgb
from lrface.detect import box_iou
from lrface.detect.mtcnn import MTCNN
from lrface.machine import describe_machine
from lrface.paths import resolve_lfw, shared_video
from lrface.video.sources import open_source

LFW_SIDE = 250


def pairs(reference: list, other: list, threshold: float = 0.5) -> list[tuple]:
    """Greedy one-to-one pairing by box IoU, best first; (reference face, other face, IoU)."""
    scored = sorted(
        (
            (box_iou(r.box, o.box), i, j)
            for i, r in enumerate(reference)
            for j, o in enumerate(other)
        ),
        reverse=True,
    )
    used_r, used_o, out = set(), set(), []
    for iou, i, j in scored:
        if iou < threshold or i in used_r or j in used_o:
            continue
        used_r.add(i)
        used_o.add(j)
        out.append((reference[i], other[j], iou))
    return out


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def pyramid_seconds(det: MTCNN, image: np.ndarray) -> float:
    batch = image[None]
    imgs = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        return cpu_seconds(lambda: list(det._pyramid(batch, imgs, det.min_face, det.max_face)))


def scene_rows(frames: list[np.ndarray], min_face: float) -> list[dict]:
    reference = MTCNN(min_face=min_face, pyramid="area")
    cascade = MTCNN(min_face=min_face, pyramid="cascade")
    rows = []
    for height in (1080, 720):
        images = [
            frame
            if frame.shape[0] == height
            else cv2.resize(
                frame,
                (round(frame.shape[1] * height / frame.shape[0]), height),
                interpolation=cv2.INTER_AREA,
            )
            for frame in frames
        ]
        found = {"area": [], "cascade": []}
        seconds = {
            k: [] for k in ("area_pyramid", "cascade_pyramid", "area_detect", "cascade_detect")
        }
        for name, det in (("area", reference), ("cascade", cascade)):
            det.detect(images[0])  # warm-up
            for image in images:
                seconds[f"{name}_pyramid"].append(pyramid_seconds(det, image))
                start = time.process_time()
                found[name].append(det.detect(image))
                seconds[f"{name}_detect"].append(time.process_time() - start)
        matched = [
            p for a, c in zip(found["area"], found["cascade"], strict=True) for p in pairs(a, c)
        ]
        ious = np.array([iou for _, _, iou in matched])
        marks = np.array(
            [np.linalg.norm(r.landmarks - o.landmarks, axis=1).mean() for r, o, _ in matched]
        )
        widths = np.array([r.width for r, _, _ in matched])
        rows.append(
            {
                "frames": f"{len(images)} x {images[0].shape[1]}x{height}",
                "faces_area": sum(map(len, found["area"])),
                "faces_cascade": sum(map(len, found["cascade"])),
                "pairs": len(matched),
                "iou_mean": round(float(ious.mean()), 4),
                "iou_p5": round(float(np.percentile(ious, 5)), 4),
                "landmarks_px_mean": round(float(marks.mean()), 3),
                "landmarks_px_max": round(float(marks.max()), 3),
                "landmarks_width_mean": round(float((marks / widths).mean()), 4),
                "landmarks_width_max": round(float((marks / widths).max()), 4),
            }
            | {f"{k}_s": round(statistics.median(v), 4) for k, v in seconds.items()}
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def lfw_rows(limit: int, sizes: list[int | None]) -> list[dict]:
    paths = sorted(resolve_lfw().glob("*/*.jpg"))
    if limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    images = [load_rgb(p) for p in paths]
    detectors = {
        "area, min 12": MTCNN(min_face=12, pyramid="area"),
        "cascade, min 12": MTCNN(min_face=12, pyramid="cascade"),
        "cascade, min 6 (upscaled)": MTCNN(min_face=6, pyramid="cascade"),
    }
    reference = detectors["area, min 12"]
    subject_eyes = []
    for image in images:
        subject = [f for f in reference.detect(image) if is_subject(f, image.shape, FACE_PX)]
        subject_eyes.append(subject[0].landmarks[:2] if subject else None)
    rows = []
    for size in sizes:
        target, scaled = lfw_at_width(images, size)
        side = scaled[0].shape[0]
        row: dict = {"face_px": "full" if size is None else size, "image_px": side}
        for name, det in detectors.items():
            hits, errors, spent = 0, [], 0.0
            for img, eyes in zip(scaled, subject_eyes, strict=True):
                start = time.process_time()
                faces = det.detect(img)
                spent += time.process_time() - start
                subject = [f for f in faces if is_subject(f, img.shape, target)]
                hits += bool(subject)
                if subject and eyes is not None:
                    truth = eyes * side / LFW_SIDE
                    error = np.linalg.norm(subject[0].landmarks[:2] - truth, axis=1).mean()
                    errors.append(error / target)
            row[name] = {
                "rate": round(hits / len(images), 4),
                "eye_error_widths": round(float(np.mean(errors)), 4) if errors else None,
                "images_per_s": round(len(images) / max(spent, 1e-9), 1),
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def onnx_rows(frame: np.ndarray, min_face: float) -> dict:
    """P-Net on the cascade levels of ``frame``, R-Net and O-Net on the crops it sends them,
    PyTorch vs ONNX Runtime, CPU seconds (median of 5)."""
    import onnxruntime as ort

    det = MTCNN(min_face=min_face, pyramid="cascade")
    batch = frame[None]
    imgs = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        levels = list(det._pyramid(batch, imgs, det.min_face, det.max_face))
    inputs = {"pnet": levels, "rnet": [], "onet": []}
    hooks = [
        getattr(det, key).register_forward_pre_hook(
            lambda _module, args, key=key: inputs[key].append(args[0].clone())
        )
        for key in ("rnet", "onet")
    ]
    det.detect(frame)
    for hook in hooks:
        hook.remove()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    row: dict = {}
    for key, xs in inputs.items():
        net = getattr(det, key)
        buffer = io.BytesIO()
        torch.onnx.export(
            net,
            (xs[0].contiguous(),),
            buffer,
            input_names=["x"],
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
            dynamo=False,
        )
        session = ort.InferenceSession(
            buffer.getvalue(), options, providers=["CPUExecutionProvider"]
        )
        arrays = [x.contiguous().numpy() for x in xs]

        def run_torch(xs=xs, net=net) -> None:
            with torch.inference_mode():
                for x in xs:
                    net(x)

        def run_onnx(arrays=arrays, session=session) -> None:
            for a in arrays:
                session.run(None, {"x": a})

        times = {}
        for name, fn in (("torch", run_torch), ("onnx", run_onnx)):
            fn()
            times[name] = statistics.median(cpu_seconds(fn) for _ in range(5))
        row[key] = {
            "inputs": [list(x.shape) for x in xs],
            "torch_s": round(times["torch"], 4),
            "onnx_s": round(times["onnx"], 4),
        }
    print(
        json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "inputs"} for k, v in row.items()})
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=None, help="default: ../shared/data/video/")
    ap.add_argument("--every", type=int, default=5, help="every k-th frame of the video")
    ap.add_argument("--min-face", type=float, default=20, help="for the real scene")
    ap.add_argument("--limit", type=int, default=1000, help="LFW images (0: none)")
    ap.add_argument("--sizes", default="full,32,24,16,12,8")
    ap.add_argument("--onnx", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("out/mtcnn-pyramid.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    frames = [frame.image for frame in open_source(args.video or shared_video(), args.every)]
    report: dict = {"machine": describe_machine(), "scene": scene_rows(frames, args.min_face)}
    if args.limit:
        sizes = [None if s == "full" else int(s) for s in args.sizes.split(",")]
        report["lfw"] = {"images": args.limit, "rows": lfw_rows(args.limit, sizes)}
    if args.onnx:
        report["onnx"] = onnx_rows(frames[0], args.min_face)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
