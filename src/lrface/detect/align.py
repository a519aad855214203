"""Aligned chips from detected faces, in lrface's geometry (dlib ``get_face_chip``, 150 px,
padding 0.25).

* dlib faces (``kind == "dlib5"``) go through ``dlib.get_face_chip`` itself.
* MTCNN faces: the similarity transform (rotation, uniform scale, shift; least squares,
  Umeyama 1991) from the five MTCNN landmarks to ``MTCNN_TEMPLATE_150`` is applied with
  OpenCV. A face that must shrink more than 2x is first area-resized, so the chip is not aliased.

``chip_scale`` gives the chip-pixels-per-image-pixel of a face; ``native_chip_size`` the chip
side that keeps the face at the resolution it was captured at (a 30 px face gives a chip of
about 40 px, not an upsampled 150 px one), which is what a low-resolution student is given.
"""

from __future__ import annotations

import cv2
import numpy as np

from lrface.constants import CHIP_SIZE, EYE_DISTANCE_AT_150
from lrface.detect import Face

MTCNN_TEMPLATE_150 = np.array(
    [[46.94, 44.94], [101.70, 45.21], [73.94, 77.19], [50.62, 104.99], [97.41, 105.26]],
    dtype=np.float64,
)
"""Mean MTCNN landmarks (continuous chip coordinates) on dlib-aligned 150x150 LFW chips: 397 of
every 29th LFW image (400 tried; 1 without a dlib face, 2 without an MTCNN face), std per
coordinate 1.7-2.1 px for the eyes, 4.2-5.7 px for nose and mouth. Derived by
``python benchmarks/mtcnn_template.py --limit 400 --step 29``."""


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix ``[sR | t]`` minimising ``sum |s R src_i + t - dst_i|^2`` (no reflection)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, sing, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float((sing * sign).sum() / var_s) if var_s > 0 else 1.0
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def _template(size: int) -> np.ndarray:
    return MTCNN_TEMPLATE_150 * (size / CHIP_SIZE)


def chip_scale(face: Face) -> float:
    """Pixels of a 150 px chip per image pixel for this face (> 1 means the chip upsamples)."""
    if face.kind == "dlib5":
        # dlib's chip puts the eye centres EYE_DISTANCE_AT_150 apart
        eyes = face.landmarks[:4].reshape(2, 2, 2).mean(1)
        return EYE_DISTANCE_AT_150 / max(float(np.linalg.norm(eyes[0] - eyes[1])), 1e-6)
    m = similarity_transform(face.landmarks, MTCNN_TEMPLATE_150)
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def native_chip_size(face: Face, smallest: int = 8) -> int:
    """Chip side at which one chip pixel is one image pixel, within ``[smallest, 150]``."""
    return int(np.clip(round(CHIP_SIZE / chip_scale(face)), smallest, CHIP_SIZE))


def align_face(image: np.ndarray, face: Face, size: int = CHIP_SIZE) -> np.ndarray:
    """``size x size`` RGB uint8 chip of ``face`` from ``image``, in the project's geometry."""
    if face.kind == "dlib5":
        return _dlib_chip(image, face, size)
    if face.kind != "mtcnn":
        raise ValueError(f"no alignment for landmarks of kind {face.kind!r}")
    return warp_to_template(image, face.landmarks, size)


def student_chip(image: np.ndarray, face: Face, input_size: int) -> np.ndarray:
    """A face as a low-resolution student takes it: one interpolation from the image straight
    to ``max(native size, input_size)`` (no native-size chip that the encoder would resample
    again, which costs accuracy on tiny faces; docs/experiments/history.md, 6b)."""
    return align_face(image, face, max(native_chip_size(face), input_size))


def warp_to_template(image: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Warp so the five MTCNN ``landmarks`` land on the template scaled to ``size``."""
    m = similarity_transform(landmarks, _template(size))
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        image, m = _shrink_region(image, m, size, scale)
    # continuous coordinates -> OpenCV's (pixel centres at integers): t' = t + A 0.5 - 0.5
    m = m.copy()
    m[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        m,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def _shrink_region(
    image: np.ndarray, m: np.ndarray, size: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the chip's footprint and area-resize it by ``scale``; the transform for the result."""
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
    foot = corners @ inv.T
    h, w = image.shape[:2]
    x0, y0 = (max(int(np.floor(v)) - 2, 0) for v in foot.min(0))
    x1 = min(int(np.ceil(foot[:, 0].max())) + 2, w)
    y1 = min(int(np.ceil(foot[:, 1].max())) + 2, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image, m
    crop = image[y0:y1, x0:x1]
    new_w = max(round((x1 - x0) * scale), 1)
    new_h = max(round((y1 - y0) * scale), 1)
    small = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
    gx, gy = new_w / (x1 - x0), new_h / (y1 - y0)
    # image u -> small u' = g (u - offset); chip = A u + t = A diag(1/g) u' + (A offset + t)
    a = m[:, :2] @ np.diag([1 / gx, 1 / gy])
    t = m[:, :2] @ np.array([x0, y0], np.float64) + m[:, 2]
    return small, np.hstack([a, t[:, None]])


def _dlib_chip(image: np.ndarray, face: Face, size: int) -> np.ndarray:
    import dlib

    x1, y1, x2, y2 = (int(round(v)) for v in face.box)
    rect = dlib.rectangle(x1, y1, x2 - 1, y2 - 1)
    parts = [dlib.point(int(round(x - 0.5)), int(round(y - 0.5))) for x, y in face.landmarks]
    shape = dlib.full_object_detection(rect, parts)
    return np.asarray(
        dlib.get_face_chip(np.ascontiguousarray(image), shape, size=size, padding=0.25)
    )
