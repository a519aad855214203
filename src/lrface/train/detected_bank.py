"""The detected training faces of a split: MTCNN's view of every training image it covers.

One bank over the split's LFW training images (cached per split), then, with
``detected_unlabelled_every`` = k, one bank over every k-th image of each unlabelled folder
(the rest have no detected version and keep the degradation). The folders hold tightly
cropped faces (UTKFace: the face's MTCNN box is 162 px wide in the 200 px image, median of 20
images across the folder), so they are framed by a black border of a quarter of the side
before shrinking (``DetectionPlan.pad``).
"""

from __future__ import annotations

import numpy as np

from lrface.data.detected import (
    DetectedFaces,
    DetectionPlan,
    concat_detected,
    detect_faces,
    undetected,
)
from lrface.data.lfw import LFW
from lrface.detect.mtcnn import MTCNN
from lrface.train.config import TrainConfig
from lrface.train.sources import resolve_folder

DETECTED_MIN_FACE = 12  # MTCNN's smallest face for detected training faces, as for LR probes
TIGHT_CROP_FACE_PX = 162.0
TIGHT_CROP_PLAN_PAD = 0.25


def training_detected_faces(
    config: TrainConfig, relpaths: list[str], progress: bool = True
) -> DetectedFaces:
    """One bank row per training row ``relpaths`` (LFW relpaths, then ``<folder>:<file>``)."""
    detector = MTCNN(min_face=DETECTED_MIN_FACE)
    sizes = tuple(config.detected_sizes)
    upscale = float(config.detected_upscale_max)
    lfw = LFW(config.lfw)
    known = {image.relpath for image in lfw.images()}
    lfw_rows = [relpath for relpath in relpaths if relpath in known]
    plan = DetectionPlan(upscale_max_face=upscale)
    banks = [detect_faces(lfw.root, lfw_rows, sizes, detector, detector.settings, progress, plan)]
    for spec in config.unlabelled:
        name, root = resolve_folder(spec)
        files = [r.split(":", 1)[1] for r in relpaths if r.startswith(f"{name}:")]
        step = config.detected_unlabelled_every
        if not step:
            banks.append(undetected(sizes, len(files)))
            continue
        tight = DetectionPlan(TIGHT_CROP_FACE_PX, TIGHT_CROP_PLAN_PAD, upscale)
        picked = detect_faces(
            root, files[::step], sizes, detector, detector.settings, progress, tight
        )
        full = undetected(sizes, len(files))
        rows = np.arange(0, len(files), step)
        banks.append(_scatter(full, picked, rows))
    faces = concat_detected(banks)
    if len(faces) != len(relpaths):
        raise ValueError(
            f"detected bank has {len(faces)} rows for {len(relpaths)} training rows "
            "(training rows other than LFW images and the configured unlabelled folders?)"
        )
    shares = ", ".join(
        f"{s} px {100 * f:.1f}%" for s, f in zip(sizes, faces.found.mean(1), strict=True)
    )
    print(f"detected training faces (subject found, share of all rows): {shares}")
    return faces


def _scatter(full: DetectedFaces, part: DetectedFaces, rows: np.ndarray) -> DetectedFaces:
    """``full`` with rows ``rows`` taken from ``part`` (whose images set the shape)."""
    images = []
    for k in range(len(full.sizes)):
        array = np.zeros((len(full), *part.images[k].shape[1:]), np.uint8)
        array[rows] = part.images[k]
        images.append(array)
    boxes, scores = full.boxes.copy(), full.scores.copy()
    landmarks, found = full.landmarks.copy(), full.found.copy()
    boxes[:, rows], scores[:, rows] = part.boxes, part.scores
    landmarks[:, rows], found[:, rows] = part.landmarks, part.found
    return DetectedFaces(full.sizes, images, boxes, scores, landmarks, found)
