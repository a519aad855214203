"""Frames per second of ``lrface watch``'s per-frame work at 720p and 1080p, and where the time
goes: MTCNN's P-Net pyramid, the rest of MTCNN (R-Net, O-Net), embedding, tracking.

    python benchmarks/video_speed.py --repeats 3 [--student CKPT] --out out/video-speed.json

Frames: the synthetic benchmark's faceless background (``lrface.eval.video``) scaled to the
frame size with six LFW photos pasted so their faces are about 14, 18, 24, 24, 32 and 40 px wide
(a busy scene). Each figure is the median over ``--repeats`` frames after one warm-up frame, one
process; times are this process's CPU seconds (run with ``OMP_NUM_THREADS=1``: one core).
Teacher alone and teacher+student (if given) and the detector alone vs the whole FaceWatcher
step are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from lrface.data.images import load_rgb
from lrface.data.lfw import LFW
from lrface.detect.mtcnn import MTCNN
from lrface.eval.video import make_background
from lrface.models.registry import create_encoder
from lrface.pipeline import FacePipeline
from lrface.video.decide import fixed_threshold
from lrface.video.sources import Frame
from lrface.video.tracking import FaceTracker
from lrface.video.watcher import FaceWatcher

FACE_PX = (14, 18, 24, 24, 32, 40)
LFW_FACE_PX = 110  # about the width of MTCNN's box on a 250 px LFW deep-funneled photo


def scene(height: int, width: int, lfw: LFW, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = cv2.resize(make_background(rng), (width, height)).astype(np.uint8)
    images = lfw.images()
    for i, px in enumerate(FACE_PX):
        photo = load_rgb(lfw.path(images[int(rng.integers(len(images)))].relpath))
        small = cv2.resize(photo, None, fx=px / LFW_FACE_PX, fy=px / LFW_FACE_PX,
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        x = int((i + 0.5) * width / len(FACE_PX) - small.shape[1] / 2)
        y = int(height / 2 - small.shape[0] / 2)
        frame[y : y + small.shape[0], x : x + small.shape[1]] = small
    return frame


def timed(fn, repeats: int) -> float:
    """Median CPU seconds of this process per call (``time.process_time``): on a shared machine
    wall time mostly measures the other jobs; with one thread, CPU time is what a free core
    would take (memory-bandwidth contention still inflates it a little)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def measure(image: np.ndarray, det: MTCNN, teacher, student, repeats: int) -> dict:
    """Seconds per frame of each stage and the whole FaceWatcher step (median of repeats)."""
    h, w = image.shape[:2]
    faces = det.detect(image)
    row: dict = {"frame": f"{w}x{h}", "min_face": det.min_face, "faces_found": len(faces)}
    imgs = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        row["pnet_s"] = timed(partial(det._stage1, imgs, h, w), repeats)
    row["mtcnn_s"] = timed(partial(det.detect, image), repeats)
    row["track_s"] = timed(partial(FaceTracker().update, faces, 0), repeats)
    configs = {"teacher": FacePipeline(det, teacher)}
    if student is not None:
        configs["teacher+student"] = FacePipeline(det, teacher, student)
    for name, pipe in configs.items():
        row[f"embed_{name}_s"] = timed(partial(pipe.embed_faces, image, faces), repeats)
        watcher = FaceWatcher(det, pipe.embed_faces, lambda e, k: [], fixed_threshold(None))
        frames = (Frame(i, 0.0, image) for i in range(repeats + 1))
        row[f"watch_{name}_s"] = timed(lambda: watcher.process(next(frames)), repeats)  # noqa: B023
        row[f"fps_{name}"] = 1 / row[f"watch_{name}_s"]
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--student", default=None)
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--out", type=Path, default=Path("out/video-speed.json"))
    args = ap.parse_args()
    lfw = LFW(args.lfw)
    teacher = create_encoder("dlib-resnet-torch")
    student = create_encoder(args.student) if args.student else None
    report = {
        "device": f"{platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}",
        "faces_px": FACE_PX,
        "results": [],
    }
    for height, width in ((720, 1280), (1080, 1920)):
        image = scene(height, width, lfw)
        for min_face in (12, 20):
            row = measure(image, MTCNN(min_face=min_face), teacher, student, args.repeats)
            print(json.dumps(row), flush=True)
            report["results"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
