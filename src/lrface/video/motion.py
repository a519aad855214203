"""Motion-gated detection: run the face detector only where the picture changes.

CCTV backgrounds are mostly static, and MTCNN's P-Net over the whole pyramid is 80-95% of a
frame's time (docs/video.md). OpenCV's MOG2 background subtractor on a downscaled grey copy
of the frame marks the moving pixels; their connected regions, padded by ``pad`` minimum face
sides, and the boxes of live tracks (padded by ``track_pad`` of their width, so a face that
stops moving keeps being detected while its track lives), merged into disjoint rectangles,
are the only parts of the frame the detector sees. Every ``full_every``-th processed frame
(and the first) is detected whole, so a face that stands still with no live track (MOG2
absorbs it into the background) is found again within ``full_every`` frames; so is the whole
frame whenever the rectangles would cover more than ``max_area`` of it (one pass is then
cheaper than overlapping crops). ``full_every = 1`` turns gating off.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lrface.detect import Face, FaceDetector

Region = tuple[int, int, int, int]
"""``(x1, y1, x2, y2)`` in frame pixels, end-exclusive."""


@dataclass
class GateConfig:
    """``full_every``: detect the whole frame every N-th processed frame (1: always, no
    gating); ``pad``: margin around a moving region in minimum face sides; ``track_pad``:
    margin around a live track's box in its widths; ``max_area``: share of the frame above
    which the whole frame is detected; ``history`` / ``var_threshold``: MOG2's (frames of
    background memory, squared Mahalanobis distance marking a pixel as moving);
    ``mask_face_px``: a minimum-size face spans about this many pixels of the motion mask."""

    full_every: int = 10
    pad: float = 1.0
    track_pad: float = 1.0
    max_area: float = 0.5
    history: int = 200
    var_threshold: float = 16.0
    mask_face_px: float = 6.0

    def __post_init__(self) -> None:
        if self.full_every < 1:
            raise ValueError(f"full_every must be at least 1, got {self.full_every}")


def merge_regions(regions: list[Region]) -> list[Region]:
    """Union overlapping or touching rectangles until they are disjoint."""
    out = [tuple(r) for r in regions]
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(out)


class MotionGate:
    """Per processed frame: the regions to detect in, or None for the whole frame."""

    def __init__(self, min_face: float, config: GateConfig | None = None):
        self.config = config or GateConfig()
        self.min_face = float(min_face)
        self.step = max(1, int(self.min_face / self.config.mask_face_px))
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=self.config.history,
            varThreshold=self.config.var_threshold,
            detectShadows=False,
        )
        self._frames = 0
        self.full_frames = 0

    def motion_mask(self, image: np.ndarray) -> np.ndarray:
        """MOG2's foreground (0/255) on the grey frame shrunk by ``step``; updates the model."""
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self.step > 1:
            h, w = grey.shape
            grey = cv2.resize(grey, (w // self.step, h // self.step), interpolation=cv2.INTER_AREA)
        mask = self._subtractor.apply(grey)
        return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))

    def regions(self, image: np.ndarray, track_boxes: list[np.ndarray]) -> list[Region] | None:
        """Where to detect in ``image`` (None: everywhere), given the live tracks' boxes."""
        mask = self.motion_mask(image)  # every frame, so the background model stays current
        index = self._frames
        self._frames += 1
        if index % self.config.full_every == 0:
            self.full_frames += 1
            return None
        h, w = image.shape[:2]
        rects = []
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        pad = self.config.pad * self.min_face
        for x, y, bw, bh, _area in stats[1:count]:
            s = self.step
            rects.append((x * s - pad, y * s - pad, (x + bw) * s + pad, (y + bh) * s + pad))
        for box in track_boxes:
            x1, y1, x2, y2 = (float(v) for v in box)
            m = self.config.track_pad * max(x2 - x1, y2 - y1, self.min_face)
            rects.append((x1 - m, y1 - m, x2 + m, y2 + m))
        clipped = [
            (max(int(x1), 0), max(int(y1), 0), min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h))
            for x1, y1, x2, y2 in rects
        ]
        regions = merge_regions([r for r in clipped if r[2] > r[0] and r[3] > r[1]])
        if sum((r[2] - r[0]) * (r[3] - r[1]) for r in regions) > self.config.max_area * h * w:
            self.full_frames += 1
            return None
        return regions


def detect_regions(
    detector: FaceDetector, image: np.ndarray, regions: list[Region] | None
) -> list[Face]:
    """Faces found in each region (whole frame for None), in frame coordinates, best first.

    Regions narrower than the detector's minimum face cannot hold one and are skipped."""
    if regions is None:
        return detector.detect(image)
    min_face = float(getattr(detector, "min_face", 1))
    faces = []
    for x1, y1, x2, y2 in regions:
        if min(x2 - x1, y2 - y1) < min_face:
            continue
        shift = np.array([x1, y1], np.float32)
        for face in detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2])):
            faces.append(
                Face(
                    face.box + np.tile(shift, 2),
                    face.score,
                    face.landmarks + shift,
                    face.kind,
                )
            )
    return sorted(faces, key=lambda f: -f.score)
