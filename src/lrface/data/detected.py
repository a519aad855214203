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

Other sources and the smallest faces (``DetectionPlan``): a folder whose faces are not
``FACE_PX`` wide in their images gives its own ``source_face_px``; a tightly cropped folder
(UTKFace: the face fills the 200 px image) is first framed by a black border (``pad``, a
fraction of the side on each side), so MTCNN meets a face inside a frame as in use; and faces
up to ``upscale_max_face`` px are detected, as ``lrface gallery search`` may, on the shrunk
image upscaled 2x (bicubic), their box and landmarks mapped back to the shrunk image, from
which the chip is cut. ``concat_detected`` joins banks of different sources row-wise.

Cache: ``<cache>/detected/<key>.npz`` (plain arrays, no pickles), the key hashing the image
list, the widths, the detector's settings and any non-default plan.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from lrface.data.degrade import camera_preset
from lrface.data.images import BadImageError, load_rgb
from lrface.detect import Face, FaceDetector
from lrface.detect.align import student_chip
from lrface.paths import cache_dir

FACE_PX = 110  # face width in LFW's 250x250 images
CHUNK = 64  # images read and detected together
SAVE_EVERY = 1024  # images between checkpoints of a long detection run (a multiple of CHUNK)


UPSCALE = 2  # factor of the upscaled detection pass for the smallest faces
CAMERA_SEED = 0  # seed of a camera preset's draws, as in the verification benchmark


def camera_view(
    image: np.ndarray,
    relpath: str,
    face_px: float,
    preset: str = "clean",
    source_face_px: float = FACE_PX,
) -> np.ndarray:
    """The whole image as a camera at ``face_px`` px per face gives it: shrunk, and through
    ``preset``'s effects (before and after the shrink) drawn from a generator seeded by the
    path and the width, so every run and every encoder sees the same frame."""
    camera = camera_preset(preset)
    if camera is None:
        return shrink_image(image, face_px, source_face_px)
    digest = int(hashlib.sha1(relpath.encode()).hexdigest()[:15], 16)
    rng = np.random.default_rng((CAMERA_SEED, digest, round(face_px)))
    small = shrink_image(camera.hr_effects(image, rng), face_px, source_face_px)
    return camera.lr_effects(small, rng)


@dataclass(frozen=True)
class DetectionPlan:
    """How one source's images become detected training faces (see the module docstring).

    source_face_px: face width in the source's original images (LFW: ``FACE_PX``).
    pad: black border added on each side before shrinking, as a fraction of the side.
    upscale_max_face: widths up to this are detected on the shrunk image upscaled ``UPSCALE``x.
    preset: camera preset applied around the shrink (``camera_view``; ``clean``: none).
    """

    source_face_px: float = FACE_PX
    pad: float = 0.0
    upscale_max_face: float = 0.0
    preset: str = "clean"

    def shrink(self, image: np.ndarray, face_px: float, relpath: str) -> np.ndarray:
        """The framed image as the camera gives it with a ``face_px`` px face."""
        return camera_view(self.frame(image), relpath, face_px, self.preset, self.source_face_px)

    def frame(self, image: np.ndarray) -> np.ndarray:
        """The image with its black border (itself when ``pad`` is 0)."""
        if not self.pad:
            return image
        height, width = image.shape[:2]
        dy, dx = round(self.pad * height), round(self.pad * width)
        return cv2.copyMakeBorder(image, dy, dy, dx, dx, cv2.BORDER_CONSTANT, value=(0, 0, 0))

    def detect(self, detector: FaceDetector, smalls: list[np.ndarray], size: float) -> list:
        """Faces in each shrunk image, in its coordinates (upscaled pass for small widths)."""
        if size > self.upscale_max_face:
            return detector.detect_batch(smalls)
        bigger = [
            cv2.resize(small, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
            for small in smalls
        ]
        return [
            [Face(f.box / UPSCALE, f.score, f.landmarks / UPSCALE) for f in faces]
            for faces in detector.detect_batch(bigger)
        ]


def shrink_image(image: np.ndarray, face_px: float, source_face_px: float = FACE_PX) -> np.ndarray:
    """Area-resize the whole image by ``face_px / source_face_px`` so its face is about
    ``face_px`` wide."""
    height, width = image.shape[:2]
    ratio = face_px / source_face_px
    size = (round(width * ratio), round(height * ratio))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def lfw_at_width(images: list[np.ndarray], face_px: int | None) -> tuple[float, list]:
    """(subject face width, images) with LFW's 250 px images area-shrunk (OpenCV INTER_AREA,
    square) so the face is about ``face_px`` wide; None: as they are (``FACE_PX``). The
    detection benchmarks' sizes."""
    import cv2

    if face_px is None:
        return FACE_PX, list(images)
    side = round(250 * face_px / FACE_PX)
    return face_px, [cv2.resize(i, (side, side), interpolation=cv2.INTER_AREA) for i in images]


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

    def subset(self, rows: np.ndarray) -> DetectedFaces:
        """The bank restricted to ``rows`` (in that order), e.g. one split of a bank of all LFW."""
        rows = np.asarray(rows, np.int64)
        return DetectedFaces(
            self.sizes,
            [images[rows] for images in self.images],
            self.boxes[:, rows],
            self.scores[:, rows],
            self.landmarks[:, rows],
            self.found[:, rows],
        )

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
    plan: DetectionPlan = DetectionPlan(),
) -> DetectedFaces:
    """Shrink, detect and keep the subject face of every image at every width (cached).

    ``settings`` describes the detector (it enters the cache key). An unreadable image counts
    as not found at every width and is reported at the end, with its path. The work (~8
    images/s on one CPU thread for four widths) is checkpointed every ``SAVE_EVERY`` images
    to ``<key>.partial.npz``; a later call with the same arguments resumes from there.
    """
    root = Path(root)
    described = {"files": relpaths, "sizes": list(sizes), "detector": settings}
    if plan != DetectionPlan():  # the default plan keeps the keys of banks made before plans
        described["plan"] = asdict(plan)
    key = hashlib.sha1(json.dumps(described).encode()).hexdigest()[:16]
    path = cache_dir() / "detected" / f"{key}.npz"
    if path.is_file():
        return _load(path)
    partial = path.with_suffix(".partial.npz")
    n = len(relpaths)
    state = _load_state(partial) if partial.is_file() else _empty_state(len(sizes), n)
    bar = tqdm(
        total=n, initial=int(state["done"].sum()), desc="detect", unit="img", disable=not progress
    )
    for start in range(0, n, CHUNK):
        todo = [row for row in range(start, min(start + CHUNK, n)) if not state["done"][row]]
        rows, originals = [], []
        for row in todo:
            try:
                originals.append(load_rgb(root / relpaths[row]))
                rows.append(row)
            except BadImageError as exc:
                state["bad"].append(f"{relpaths[row]}: {exc}")
        for k, size in enumerate(sizes):
            smalls = [
                plan.shrink(image, size, relpaths[row])
                for row, image in zip(rows, originals, strict=True)
            ]
            found = plan.detect(detector, smalls, size)
            for row, small, faces in zip(rows, smalls, found, strict=True):
                _store_image(state, k, row, small, root)
                subjects = [f for f in faces if is_subject(f, small.shape, size)]
                if subjects:
                    face = max(subjects, key=lambda f: f.area)
                    state["boxes"][k, row], state["scores"][k, row] = face.box, face.score
                    state["landmarks"][k, row] = face.landmarks
                    state["found"][k, row] = True
        state["done"][todo] = True
        bar.update(len(todo))
        if todo and (start // CHUNK + 1) % (SAVE_EVERY // CHUNK) == 0:
            _save(partial, state, sizes)
    bar.close()
    if state["bad"]:
        print(
            f"detect: skipped {len(state['bad'])} unreadable images (no detected version): "
            + "; ".join(sorted(state["bad"]))
        )
    if any(image is None for image in state["images"]):
        raise ValueError(f"{root}: none of the training images could be read")
    _save(path, state, sizes)
    partial.unlink(missing_ok=True)
    return DetectedFaces(
        tuple(sizes),
        state["images"],
        state["boxes"],
        state["scores"],
        state["landmarks"],
        state["found"],
    )


def concat_detected(banks: list[DetectedFaces]) -> DetectedFaces:
    """Row-wise join of banks with the same widths; each width's images are padded with black
    at the bottom and right to the largest shape (coordinates stay valid, and a chip reaching
    past an image's edge meets black there either way)."""
    sizes = banks[0].sizes
    if any(bank.sizes != sizes for bank in banks):
        raise ValueError(f"banks to join need the same widths, got {[b.sizes for b in banks]}")
    images = []
    for k in range(len(sizes)):
        height = max(bank.images[k].shape[1] for bank in banks)
        width = max(bank.images[k].shape[2] for bank in banks)
        padded = [
            np.pad(
                bank.images[k],
                (
                    (0, 0),
                    (0, height - bank.images[k].shape[1]),
                    (0, width - bank.images[k].shape[2]),
                    (0, 0),
                ),
            )
            for bank in banks
        ]
        images.append(np.concatenate(padded))
    return DetectedFaces(
        sizes,
        images,
        np.concatenate([bank.boxes for bank in banks], axis=1),
        np.concatenate([bank.scores for bank in banks], axis=1),
        np.concatenate([bank.landmarks for bank in banks], axis=1),
        np.concatenate([bank.found for bank in banks], axis=1),
    )


def undetected(sizes: tuple[int, ...], rows: int) -> DetectedFaces:
    """A bank of ``rows`` rows with no detected face at any width (1x1 black images)."""
    return DetectedFaces(
        tuple(sizes),
        [np.zeros((rows, 1, 1, 3), np.uint8) for _ in sizes],
        np.zeros((len(sizes), rows, 4), np.float32),
        np.zeros((len(sizes), rows), np.float32),
        np.zeros((len(sizes), rows, 5, 2), np.float32),
        np.zeros((len(sizes), rows), bool),
    )


def _empty_state(widths: int, n: int) -> dict:
    return {
        "boxes": np.zeros((widths, n, 4), np.float32),
        "scores": np.zeros((widths, n), np.float32),
        "landmarks": np.zeros((widths, n, 5, 2), np.float32),
        "found": np.zeros((widths, n), bool),
        "done": np.zeros(n, bool),
        "images": [None] * widths,  # allocated at the first image of each width
        "bad": [],
    }


def _store_image(state: dict, k: int, row: int, small: np.ndarray, root: Path) -> None:
    images = state["images"]
    if images[k] is None:
        images[k] = np.zeros((len(state["done"]), *small.shape), np.uint8)
    if images[k].shape[1:] != small.shape:
        raise ValueError(
            f"{root}: detected training faces need images of one size; shrunk shapes "
            f"{images[k].shape[1:]} and {small.shape} differ"
        )
    images[k][row] = small


def _save(path: Path, state: dict, sizes: tuple[int, ...]) -> None:
    """Atomic write of plain arrays (no pickles); unreadable rows keep zero images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # per process: under torchrun every rank builds the bank and replaces the file atomically
    temporary = path.with_name(path.name.replace(".npz", f".{os.getpid()}.tmp.npz"))
    arrays = {k: v for k, v in state.items() if k not in ("images", "bad")}
    arrays["bad"] = np.array(state["bad"], dtype=str)
    arrays["sizes"] = np.array(sizes)
    for k, images in enumerate(state["images"]):
        if images is not None:
            arrays[f"images_{k}"] = images
    np.savez(temporary, **arrays)
    temporary.replace(path)


def _load_state(path: Path) -> dict:
    with np.load(path) as saved:
        widths = saved["found"].shape[0]
        state = {k: saved[k] for k in ("boxes", "scores", "landmarks", "found", "done")}
        state["images"] = [saved.get(f"images_{k}") for k in range(widths)]
        state["bad"] = [str(b) for b in saved["bad"]]
    return state


def _load(path: Path) -> DetectedFaces:
    with np.load(path) as saved:
        sizes = tuple(int(size) for size in saved["sizes"])
        return DetectedFaces(
            sizes=sizes,
            images=[saved[f"images_{k}"] for k in range(len(sizes))],
            boxes=saved["boxes"],
            scores=saved["scores"],
            landmarks=saved["landmarks"],
            found=saved["found"],
        )
