"""Training faces as the deployed pipeline sees them: whole image shrunk, detected, aligned.

The random degradation (``data.degrade``) shrinks a dlib-aligned 150 px chip, so a student
trained on it never meets what the pipeline gives it in use: a detector's landmarks on a tiny
face (MTCNN on a 36x36 image is off by pixels) and a chip warped straight from those few
pixels. ``DetectedFaces`` holds, for every training image and each face width ``s``, the
whole image area-shrunk so its face is about ``s`` px wide (LFW faces are ``FACE_PX`` wide in
the 250x250 originals) and the face MTCNN found in it, so the training stream can warp a
student input exactly as ``FacePipeline`` does. Only a plausible subject face counts (centre
within ``0.25 s`` of the image centre, width ``0.4 s`` to ``1.6 s``); an image without one at
some width simply has no detected version at that width.

Cache: ``<cache>/detected/<key>.npz`` (plain arrays, no pickles), the key hashing the image
list, the widths and the detector's settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lrface.data.images import BadImageError, load_rgb
from lrface.detect import Face, FaceDetector
from lrface.detect.align import student_chip
from lrface.paths import cache_dir

FACE_PX = 110  # face width in LFW's 250x250 images
CHUNK = 64  # images read and detected together


def shrink_image(image: np.ndarray, face_px: float) -> np.ndarray:
    """Area-resize the whole image by ``face_px / FACE_PX`` so its face is about ``face_px``."""
    height, width = image.shape[:2]
    size = (round(width * face_px / FACE_PX), round(height * face_px / FACE_PX))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def is_subject(face: Face, shape: tuple[int, ...], face_px: float) -> bool:
    """The centred subject of an LFW-like image (not a background face or a false box)."""
    height, width = shape[:2]
    centre_x, centre_y = (face.box[:2] + face.box[2:]) / 2
    return (
        abs(centre_x - width / 2) <= 0.25 * face_px
        and abs(centre_y - height / 2) <= 0.25 * face_px
        and 0.4 * face_px <= face.width <= 1.6 * face_px
    )


@dataclass
class DetectedFaces:
    """Per face width ``sizes[k]``: shrunk images ``N x h_k x w_k x 3``, MTCNN boxes ``N x 4``,
    scores ``N`` and landmarks ``N x 5 x 2``, and ``found`` (``N`` bools; rows without a
    subject face hold zeros). Row ``i`` is training image ``i``."""

    sizes: tuple[int, ...]
    images: list[np.ndarray]
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray

    def __post_init__(self) -> None:
        rows = self.found.shape[1]
        if self.found.shape[0] != len(self.sizes) or len(self.images) != len(self.sizes):
            raise ValueError("DetectedFaces needs one image array and one found row per size")
        if any(len(images) != rows for images in self.images):
            raise ValueError("every size needs one shrunk image per training row")

    def __len__(self) -> int:
        return self.found.shape[1]

    def choices(self, row: int) -> np.ndarray:
        """Indices ``k`` of the widths at which row ``row`` has a detected face."""
        return np.flatnonzero(self.found[:, row])

    def face(self, k: int, row: int) -> Face:
        return Face(self.boxes[k, row], float(self.scores[k, row]), self.landmarks[k, row])

    def chip(self, k: int, row: int, input_size: int) -> np.ndarray:
        """The student input for row ``row`` at width ``sizes[k]``, as ``FacePipeline`` makes
        it (``detect.align.student_chip``)."""
        return student_chip(self.images[k][row], self.face(k, row), input_size)


def detect_faces(
    root: str | Path,
    relpaths: list[str],
    sizes: tuple[int, ...],
    detector: FaceDetector,
    settings: dict,
    progress: bool = True,
) -> DetectedFaces:
    """Shrink, detect and keep the subject face of every image at every width (cached).

    ``settings`` describes the detector (it enters the cache key). An unreadable image counts
    as not found at every width and is reported once at the end, with its path.
    """
    root = Path(root)
    key = hashlib.sha1(
        json.dumps({"files": relpaths, "sizes": list(sizes), "detector": settings}).encode()
    ).hexdigest()[:16]
    path = cache_dir() / "detected" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as saved:
            return DetectedFaces(
                sizes=tuple(int(s) for s in saved["sizes"]),
                images=[saved[f"images_{k}"] for k in range(len(sizes))],
                boxes=saved["boxes"],
                scores=saved["scores"],
                landmarks=saved["landmarks"],
                found=saved["found"],
            )
    n = len(relpaths)
    boxes = np.zeros((len(sizes), n, 4), np.float32)
    scores = np.zeros((len(sizes), n), np.float32)
    landmarks = np.zeros((len(sizes), n, 5, 2), np.float32)
    found = np.zeros((len(sizes), n), bool)
    images: list[list[np.ndarray | None]] = [[None] * n for _ in sizes]
    bad: dict[str, str] = {}
    bar = tqdm(total=n, desc="detect", unit="img", disable=not progress)
    for start in range(0, n, CHUNK):
        rows, originals = [], []
        for row in range(start, min(start + CHUNK, n)):
            try:
                originals.append(load_rgb(root / relpaths[row]))
                rows.append(row)
            except BadImageError as exc:
                bad[relpaths[row]] = str(exc)
        for k, size in enumerate(sizes):
            smalls = [shrink_image(image, size) for image in originals]
            for row, small, faces in zip(rows, smalls, detector.detect_batch(smalls), strict=True):
                images[k][row] = small
                subjects = [f for f in faces if is_subject(f, small.shape, size)]
                if subjects:
                    face = max(subjects, key=lambda f: f.area)
                    boxes[k, row], scores[k, row] = face.box, face.score
                    landmarks[k, row], found[k, row] = face.landmarks, True
        bar.update(min(start + CHUNK, n) - start)
    bar.close()
    if bad:
        listed = "; ".join(f"{path}: {reason}" for path, reason in sorted(bad.items()))
        print(f"detect: skipped {len(bad)} unreadable images (no detected version): {listed}")
    stacked = [_stack(per_size, root) for per_size in images]
    faces = DetectedFaces(tuple(sizes), stacked, boxes, scores, landmarks, found)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(
        temporary,
        sizes=np.array(sizes),
        boxes=boxes,
        scores=scores,
        landmarks=landmarks,
        found=found,
        **{f"images_{k}": array for k, array in enumerate(stacked)},
    )
    temporary.replace(path)
    return faces


def _stack(images: list[np.ndarray | None], root: Path) -> np.ndarray:
    """One array of equal-shape images; unreadable rows (``None``) become zeros."""
    shapes = {image.shape for image in images if image is not None}
    if len(shapes) > 1:
        raise ValueError(
            f"{root}: detected training faces need images of one size, got shrunk shapes "
            f"{sorted(shapes)}"
        )
    if not shapes:
        raise ValueError(f"{root}: none of the training images could be read")
    (shape,) = shapes
    return np.stack([np.zeros(shape, np.uint8) if image is None else image for image in images])
