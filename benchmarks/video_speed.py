"""Frames per second of ``lrface watch``'s per-frame work at 720p and 1080p, and where the time
goes: MTCNN's P-Net pyramid, the rest of MTCNN (R-Net, O-Net), embedding, tracking; and
full-frame vs motion-gated detection (``lrface.video.motion``) on a moving scene.

    python benchmarks/video_speed.py --repeats 3 [--student CKPT] --out out/video-speed.json

Frames: the synthetic benchmark's faceless background (``lrface.eval.video``) scaled to the
frame size with six LFW photos pasted so their faces are about 14, 18, 24, 24, 32 and 40 px wide
(a busy scene). Stage figures: the median over ``--repeats`` copies of one frame after one
warm-up frame. Moving scene (``--moving N`` frames): the same six photos each move 2-6 px per
frame in a random direction (bouncing off the edges) over the static background, with fresh
Gaussian noise (sigma 2) on every frame; the whole FaceWatcher step (detect, embed, track) runs
over the N frames with full-frame detection and with motion gating (``--full-every``), and the
gated path's recall is the share of the full-frame path's faces (per frame) that it also finds
(box IoU >= 0.5). Every figure is taken with the encoders under each of ``--runtimes``
(PyTorch, ONNX Runtime). Times are this process's CPU seconds (run with
``OMP_NUM_THREADS=1``: one core); every comparison is made in the same run.
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
from lrface.detect import box_iou
from lrface.detect.mtcnn import MTCNN
from lrface.eval.video import make_background
from lrface.models.factory import create_encoder
from lrface.models.onnx_encoder import with_runtime
from lrface.pipeline import FacePipeline
from lrface.video.decide import fixed_threshold
from lrface.video.motion import GateConfig
from lrface.video.sources import Frame
from lrface.video.tracking import FaceTracker
from lrface.video.watcher import FaceWatcher, WatchConfig

FACE_PX = (14, 18, 24, 24, 32, 40)
LFW_FACE_PX = 110  # about the width of MTCNN's box on a 250 px LFW deep-funneled photo


def moving_scene(height: int, width: int, lfw: LFW, frames: int, seed: int = 0) -> list:
    """Frame 0 is the static stage-timing scene; then each photo moves 2-6 px per frame in a
    random direction, bouncing off the edges, and every frame gets its own noise (sigma 2)."""
    rng = np.random.default_rng(seed)
    background = cv2.resize(make_background(rng), (width, height))
    images = lfw.images()
    photos, pos, vel = [], [], []
    for i, px in enumerate(FACE_PX):
        photo = load_rgb(lfw.path(images[int(rng.integers(len(images)))].relpath))
        small = cv2.resize(photo, None, fx=px / LFW_FACE_PX, fy=px / LFW_FACE_PX,
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        photos.append(small)
        pos.append([(i + 0.5) * width / len(FACE_PX) - small.shape[1] / 2,
                    height / 2 - small.shape[0] / 2])  # fmt: skip
        angle = rng.uniform(0, 2 * np.pi)
        vel.append(rng.uniform(2, 6) * np.array([np.cos(angle), np.sin(angle)]))
    pos, vel = np.array(pos), np.array(vel)
    out = []
    for t in range(frames):
        frame = background.copy()
        for k, small in enumerate(photos):
            x, y = (int(v) for v in pos[k])
            frame[y : y + small.shape[0], x : x + small.shape[1]] = small
            limit = np.array([width - small.shape[1], height - small.shape[0]])
            pos[k] += vel[k]
            vel[k] = np.where((pos[k] < 0) | (pos[k] > limit), -vel[k], vel[k])
            pos[k] = np.clip(pos[k], 0, limit)
        if t:
            frame = frame + rng.normal(0, 2, frame.shape)
        out.append(np.clip(frame, 0, 255).astype(np.uint8))
    return out


def no_gallery(embeddings: np.ndarray, k: int) -> list:
    """An empty watch list: tracks that end are decided as unknown at no search cost."""
    return [[] for _ in embeddings]


def run_watcher(frames: list, det: MTCNN, embed, full_every: int) -> tuple[float, list]:
    """CPU seconds per frame of FaceWatcher.process over ``frames`` and each frame's faces."""
    config = WatchConfig(gate=GateConfig(full_every=full_every))
    watcher = FaceWatcher(det, embed, no_gallery, fixed_threshold(None), config)
    found = []
    start = time.process_time()
    for i, image in enumerate(frames):
        watcher.process(Frame(i, i / 25, image))
        found.append([face for _, face in watcher.current])
    return (time.process_time() - start) / len(frames), found


def gated_vs_full(frames: list, det: MTCNN, embed, full_every: list[int]) -> dict:
    """Full-frame vs motion-gated FaceWatcher steps on the same frames: speed and recall (the
    share of the full-frame path's faces the gated path finds too), per ``full_every``."""
    run_watcher(frames[:1], det, embed, 1)  # warm-up
    full_s, full = run_watcher(frames, det, embed, 1)
    total = sum(len(fs) for fs in full)
    row: dict = {"moving_frames": len(frames), "full_s": full_s, "fps_full": 1 / full_s}
    row["full_faces"] = total
    for n in full_every:
        gated_s, gated = run_watcher(frames, det, embed, n)
        pairs = list(zip(full, gated, strict=True))
        matched = sum(any(box_iou(f.box, g.box) >= 0.5 for g in gs) for fs, gs in pairs for f in fs)
        extra = sum(
            not any(box_iou(f.box, g.box) >= 0.5 for f in fs) for fs, gs in pairs for g in gs
        )
        row |= {
            f"gated{n}_s": gated_s,
            f"fps_gated{n}": 1 / gated_s,
            f"gated{n}_recall": matched / max(total, 1),
            f"gated{n}_extra_faces": extra,
        }
    return row


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


def measure(
    frames: list, det: MTCNN, teacher, student, repeats: int, full_every: int, runtimes: list[str]
) -> dict:
    """Seconds per frame of each stage and the whole FaceWatcher step (median of repeats), then
    full-frame vs gated FaceWatcher steps over the moving ``frames`` (teacher+student if
    given), under each encoder runtime."""
    image = frames[0]
    h, w = image.shape[:2]
    faces = det.detect(image)
    row: dict = {"frame": f"{w}x{h}", "min_face": det.min_face, "faces_found": len(faces)}
    imgs = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        row["pnet_s"] = timed(partial(det._stage1, image[None], imgs), repeats)
    row["mtcnn_s"] = timed(partial(det.detect, image), repeats)
    row["track_s"] = timed(partial(FaceTracker().update, faces, 0), repeats)
    configs = {}
    for runtime in runtimes:
        suffix = "" if runtime == "torch" else f"/{runtime}"
        run_teacher = with_runtime(teacher, runtime)
        # None: not the default student
        configs[f"teacher{suffix}"] = FacePipeline(det, run_teacher, None)
        if student is not None:
            run_student = with_runtime(student, runtime)
            configs[f"teacher+student{suffix}"] = FacePipeline(det, run_teacher, run_student)
    for name, pipe in configs.items():
        row[f"embed_{name}_s"] = timed(partial(pipe.embed_faces, image, faces), repeats)
        config = WatchConfig(gate=GateConfig(full_every=1))
        watcher = FaceWatcher(det, pipe.embed_faces, no_gallery, fixed_threshold(None), config)
        same = (Frame(i, 0.0, image) for i in range(repeats + 1))
        row[f"watch_{name}_s"] = timed(lambda: watcher.process(next(same)), repeats)  # noqa: B023
        row[f"fps_{name}"] = 1 / row[f"watch_{name}_s"]
    if len(frames) > 1:
        for runtime in runtimes:  # the most complete pipeline of each runtime
            suffix = "" if runtime == "torch" else f"/{runtime}"
            pipe = configs.get(f"teacher+student{suffix}", configs[f"teacher{suffix}"])
            moving = gated_vs_full(frames, det, pipe.embed_faces, full_every)
            row |= {f"{k}{suffix}": v for k, v in moving.items()}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--student", default=None)
    ap.add_argument("--moving", type=int, default=20, help="frames of the moving scene (0: none)")
    ap.add_argument("--full-every", default="10,25", help="gated runs: full frame every N")
    ap.add_argument("--sizes", default="720,1080", help="frame heights: 720 and/or 1080")
    ap.add_argument("--min-faces", default="12,20")
    ap.add_argument(
        "--runtimes", default="torch,onnx", help="encoder runtimes to time: torch and/or onnx"
    )
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
    full_every = [int(v) for v in args.full_every.split(",")]
    runtimes = args.runtimes.split(",")
    report["runtimes"] = runtimes
    report["moving"] = {"frames": args.moving, "full_every": full_every}
    for height in (int(v) for v in args.sizes.split(",")):
        frames = moving_scene(height, height * 16 // 9, lfw, max(args.moving, 1))
        for min_face in (float(v) for v in args.min_faces.split(",")):
            det = MTCNN(min_face=min_face, pyramid="cascade")  # as lrface watch
            row = measure(frames, det, teacher, student, args.repeats, full_every, runtimes)
            print(json.dumps(row), flush=True)
            report["results"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
