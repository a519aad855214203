"""Motion-gated detection: run the face detector only where the picture changes and where
live tracks are expected.

CCTV backgrounds are mostly static, and MTCNN's P-Net over the whole pyramid is 80-95% of a
frame's time (docs/video.md). Each processed frame gets a ``DetectionPlan``:

- **moving regions**: OpenCV's MOG2 background subtractor on a downscaled grey copy of the
  frame marks the moving pixels; their connected regions, padded by ``pad`` minimum face sides,
  and the live tracks' predicted boxes (padded by ``track_pad`` of their width, so a face that
  stops moving keeps being detected while its track lives), merged into disjoint rectangles,
  are detected as crops at full resolution;
- **track canvases**, in a crowd (below) instead: around each live track's predicted box
  (padded the same) a square is cut and shrunk so the face is at most ``canvas_face_px`` wide,
  on black: canvases whose faces are within half an octave share one size and go through the
  detector as one batch,
  and the pyramid of a small canvas has few, small levels whatever the face's size in the
  frame;
- **the whole frame** every ``full_every``-th processed frame (and the first), so a face that
  stands still with no live track (MOG2 absorbs it into the background) is found again within
  ``full_every`` frames.

When the padded moving regions (or the rectangles they merge into) cover more than
``max_area`` of the frame (a crowd: everyone moves) they are dropped: the frame is searched
around its tracks only, and new faces are found at the whole-frame passes, which come every
``crowd_full_every``-th frame while the crowd lasts (``crowd_full_every = 1``: every crowded
frame is searched whole, the behaviour before track canvases), and the tracks only every
``crowd_track_every``-th frame (the tracker's prediction carries them over the others, but for
tracks seen once, which die at their second miss). ``full_every = 1`` turns gating off.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from lrface.detect import Face, FaceDetector
from lrface.detect.mtcnn import MTCNN, nms

Region = tuple[int, int, int, int]
"""``(x1, y1, x2, y2)`` in frame pixels, end-exclusive."""

DUPLICATE_OVERLAP = 0.7
"""Faces found twice (overlapping canvases, a canvas and a moving region) whose boxes share
more than this of the smaller one's area are one face, the higher-scoring kept: MTCNN's own
last suppression (O-Net's, ``min`` mode at 0.7), so a frame searched in parts keeps what the
whole frame would."""


@dataclass
class GateConfig:
    """``full_every``: detect the whole frame every N-th processed frame (1: always, no
    gating); ``pad``: margin around a moving region in minimum face sides; ``track_pad``:
    margin around a live track's box in its widths; ``max_area``: share of the frame above
    which the whole frame is detected; ``history`` / ``var_threshold``: MOG2's (frames of
    background memory, squared Mahalanobis distance marking a pixel as moving);
    ``mask_face_px``: a minimum-size face spans about this many pixels of the motion mask;
    ``crowd_full_every``: while moving regions exceed ``max_area``, the whole frame every N-th
    frame (tracks only in between), and around the tracks every ``crowd_track_every``-th
    frame (no detection in between: the tracker's prediction carries them);
    ``canvas_face_px``: the widest a tracked face is on its canvas (0: MTCNN's O-Net input,
    48 px, or twice the detector's minimum face when that is more);
    ``canvas_range``: on canvases, faces from 1/``canvas_range`` to ``canvas_range`` times the
    tracked faces' widths are searched for (MTCNN)."""

    full_every: int = 10
    pad: float = 1.0
    track_pad: float = 1.0
    max_area: float = 0.4
    history: int = 200
    var_threshold: float = 16.0
    mask_face_px: float = 6.0
    crowd_full_every: int = 10
    crowd_track_every: int = 2
    canvas_face_px: float = 0.0
    canvas_range: float = 1.5

    def __post_init__(self) -> None:
        if min(self.full_every, self.crowd_full_every, self.crowd_track_every) < 1:
            raise ValueError(
                "full_every, crowd_full_every and crowd_track_every must be at least 1, got "
                f"{self.full_every}, {self.crowd_full_every} and {self.crowd_track_every}"
            )


@dataclass
class DetectionPlan:
    """Where to detect in one frame: the whole of it, or ``regions`` (crops at full
    resolution) and ``tracks`` (predicted ``[x1, y1, x2, y2]`` boxes, each detected on a
    canvas around it)."""

    whole: bool
    regions: list[Region]
    tracks: list[np.ndarray]


@dataclass
class Motion:
    """What ``MotionGate.observe`` found in a frame: ``whole``, the frame is searched whole;
    else ``regions``, the merged moving regions of a frame with a few movers, or None for a
    crowd, searched around its tracks (only the tracks seen once when ``young_only``)."""

    whole: bool
    regions: list[Region] | None
    young_only: bool = False


def merge_regions(regions: list[Region]) -> list[Region]:
    """Union overlapping or touching rectangles until they are disjoint.

    Each round joins every group of rectangles connected by overlaps into its bounding box
    (the overlaps tested all at once: a crowd's frame has hundreds of moving regions); the
    boxes of one round can overlap again, so rounds repeat until none do."""
    boxes = np.asarray(regions, np.int64).reshape(-1, 4)
    while len(boxes) > 1:
        x1, y1, x2, y2 = boxes.T
        touching = (
            (x1[:, None] <= x2[None])
            & (x1[None] <= x2[:, None])
            & (y1[:, None] <= y2[None])
            & (y1[None] <= y2[:, None])
        )
        count, group = connected_components(csr_matrix(touching), directed=False)
        if count == len(boxes):
            break
        boxes = np.stack(
            [
                np.concatenate([boxes[group == g, :2].min(0), boxes[group == g, 2:].max(0)])
                for g in range(count)
            ]
        )
    return sorted(tuple(int(v) for v in box) for box in boxes)


def covered_share(regions: np.ndarray, grid: tuple[int, int], step: int) -> float:
    """The share of a ``grid`` (rows, columns) of ``step`` px cells that ``regions`` (``n x
    4``, frame px) cover, a cell counting when a region reaches into it.

    Each region adds 1 inside its cells to a grid of differences (+1 and -1 at its corners)
    whose running sums count the regions over every cell: one pass for hundreds of regions."""
    rows, cols = grid
    cells = np.asarray(regions, np.int64).reshape(-1, 4)
    x1, y1 = np.minimum(cells[:, 0] // step, cols), np.minimum(cells[:, 1] // step, rows)
    x2, y2 = np.minimum(-(-cells[:, 2] // step), cols), np.minimum(-(-cells[:, 3] // step), rows)
    edges = np.zeros((rows + 1, cols + 1), np.int32)
    for ys, xs, sign in ((y1, x1, 1), (y1, x2, -1), (y2, x1, -1), (y2, x2, 1)):
        np.add.at(edges, (ys, xs), sign)
    return float((edges.cumsum(0).cumsum(1)[:-1, :-1] > 0).mean())


class MotionGate:
    """Per processed frame: the ``DetectionPlan`` (module docstring)."""

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
        self._since_whole = 0
        self.full_frames = 0
        self.crowded_frames = 0
        self.skipped_frames = 0

    def motion_mask(self, image: np.ndarray) -> np.ndarray:
        """MOG2's foreground (0/255) on the grey frame shrunk by ``step``; updates the model.

        The shrinking averages whole ``step`` x ``step`` blocks (the last ``w % step`` columns
        and ``h % step`` rows left out): OpenCV's fast path for an integer factor, 4x cheaper
        than the fractional one, and each mask pixel is exactly ``step`` frame pixels."""
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self.step > 1:
            s, (h, w) = self.step, grey.shape
            grey = cv2.resize(
                grey[: h - h % s, : w - w % s], (w // s, h // s), interpolation=cv2.INTER_AREA
            )
        mask = self._subtractor.apply(grey)
        return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))

    def observe(self, image: np.ndarray) -> Motion:
        """What moves in ``image`` and how the frame is searched, before its tracks are known
        (the pipeline runs this ahead, in the whole-frame thread); updates the background
        model and the schedule. Every frame, in order."""
        mask = self.motion_mask(image)  # every frame, so the background model stays current
        index = self._frames
        self._frames += 1
        self._since_whole += 1
        if index % self.config.full_every == 0:
            return self._whole()
        h, w = image.shape[:2]
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        s, pad = self.step, self.config.pad * self.min_face
        x, y, bw, bh = (stats[1:count, i].astype(np.float64) for i in range(4))
        # padded, clipped to the frame; empty ones dropped
        x1, y1 = np.maximum((x * s - pad).astype(int), 0), np.maximum((y * s - pad).astype(int), 0)
        x2 = np.minimum(np.ceil((x + bw) * s + pad).astype(int), w)
        y2 = np.minimum(np.ceil((y + bh) * s + pad).astype(int), h)
        inside = (x2 > x1) & (y2 > y1)
        clipped = np.stack([x1, y1, x2, y2], 1)[inside]
        # the share of the frame the padded regions cover, before any merging (a crowd's
        # frame has hundreds of regions)
        crowded = covered_share(clipped, mask.shape, s) > self.config.max_area
        if not crowded:
            regions = merge_regions([tuple(int(v) for v in r) for r in clipped])
            area = sum((r[2] - r[0]) * (r[3] - r[1]) for r in regions)
            if area <= self.config.max_area * h * w:
                return Motion(False, regions)
        self.crowded_frames += 1
        if self._since_whole >= self.config.crowd_full_every:
            return self._whole()
        if self._since_whole % self.config.crowd_track_every:
            self.skipped_frames += 1
            return Motion(False, None, young_only=True)
        return Motion(False, None)

    def plan_for(
        self,
        motion: Motion,
        size: tuple[int, int],
        track_boxes: list[np.ndarray],
        young_boxes: list[np.ndarray] | None = None,
    ) -> DetectionPlan:
        """The frame's plan from what ``observe`` found in it (the frame ``size``, w x h), the
        live tracks' predicted boxes and those of the tracks seen only once (searched even on
        the crowded frames left to the tracker: a new track dies at its second miss)."""
        if motion.whole:
            return DetectionPlan(True, [], [])
        if motion.regions is not None:
            # a few movers: the tracks' boxes join the moving regions as crops at full
            # resolution (one pass over each part of the frame; canvases are for crowds)
            tracked = self._track_regions(track_boxes, *size)
            return DetectionPlan(False, merge_regions(motion.regions + tracked), [])
        if motion.young_only:  # the tracker's prediction carries the tracks, but the new ones
            return DetectionPlan(False, [], list(young_boxes or []))
        return DetectionPlan(False, [], list(track_boxes))

    def plan(
        self,
        image: np.ndarray,
        track_boxes: list[np.ndarray],
        young_boxes: list[np.ndarray] | None = None,
    ) -> DetectionPlan:
        """Where to detect in ``image``: ``observe`` then ``plan_for``, in one step."""
        size = (image.shape[1], image.shape[0])
        return self.plan_for(self.observe(image), size, track_boxes, young_boxes)

    def _track_regions(self, boxes: list[np.ndarray], w: int, h: int) -> list[Region]:
        """Each box grown by ``track_pad`` of its size on every side, clipped to the frame."""
        regions = []
        for box in boxes:
            x1, y1, x2, y2 = (float(v) for v in box)
            m = self.config.track_pad * max(x2 - x1, y2 - y1, self.min_face)
            region = (max(int(x1 - m), 0), max(int(y1 - m), 0))
            region += (min(int(np.ceil(x2 + m)), w), min(int(np.ceil(y2 + m)), h))
            if region[2] > region[0] and region[3] > region[1]:
                regions.append(region)
        return regions

    def _whole(self) -> Motion:
        self.full_frames += 1
        self._since_whole = 0
        return Motion(True, None)


def detect_planned(
    detector: FaceDetector, image: np.ndarray, plan: DetectionPlan | None, config: GateConfig
) -> list[Face]:
    """Faces ``plan`` finds in ``image`` (the whole frame for None), in frame coordinates,
    best first; a face found by two parts of the plan is kept once."""
    if plan is None or plan.whole:
        return detector.detect(image)
    min_face = float(getattr(detector, "min_face", 1))
    # canvases first: of two equal-scoring copies the whole face on a canvas is kept
    faces = detect_tracks(detector, image, plan.tracks, config, min_face)
    faces += detect_regions(detector, image, plan.regions)
    if len(plan.regions) + len(plan.tracks) > 1 and len(faces) > 1:
        boxes, scores = np.stack([f.box for f in faces]), np.array([f.score for f in faces])
        faces = [faces[i] for i in nms(boxes, scores, DUPLICATE_OVERLAP, mode="min")]
    return sorted(faces, key=lambda f: -f.score)


def detect_regions(detector: FaceDetector, image: np.ndarray, regions: list[Region]) -> list[Face]:
    """Faces found in each region (crops at full resolution), in frame coordinates.

    Regions narrower than the detector's minimum face cannot hold one and are skipped."""
    min_face = float(getattr(detector, "min_face", 1))
    faces = []
    for x1, y1, x2, y2 in regions:
        if min(x2 - x1, y2 - y1) < min_face:
            continue
        shift = np.array([x1, y1], np.float32)
        for face in detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2])):
            faces.append(_moved(face, shift, np.ones(2, np.float32)))
    return faces


def detect_tracks(
    detector: FaceDetector,
    image: np.ndarray,
    boxes: list[np.ndarray],
    config: GateConfig,
    min_face: float,
) -> list[Face]:
    """Faces found on a canvas around each predicted box, in frame coordinates.

    Each canvas is the square of side ``(1 + 2 track_pad)`` face widths about the box's centre,
    scaled (INTER_AREA, never enlarged) so the face is at most ``canvas_face_px`` wide, on black
    where it leaves the frame. Canvases are grouped by half-octave of the face width on them:
    each group shares one size (its widest face's) and one batch through the detector, which
    searches it for faces from 1/``canvas_range`` to ``canvas_range`` times its widths (a
    small face's canvas is small and its search is not widened to a large one's: more pyramid
    levels mean more proposals, and a coarse level's box can win the suppression over the
    right one and then fail R-Net). Faces cut by a canvas's edge (inside the frame) are
    dropped."""
    face_px = config.canvas_face_px or max(2 * min_face, 48.0)
    groups: dict[int, list[tuple[np.ndarray, float, float]]] = {}
    for box in boxes:
        width = max(float(box[2] - box[0]), float(box[3] - box[1]), min_face)
        scale = min(1.0, face_px / width)
        groups.setdefault(round(2 * np.log2(width * scale)), []).append((box, width, scale))
    faces = []
    for group in groups.values():
        on_canvas = [width * scale for _, width, scale in group]
        side = int(np.ceil((1 + 2 * config.track_pad) * max(on_canvas))) + 2  # + rounding
        placed = [
            _canvas(image, box, width, scale, side, config.track_pad) for box, width, scale in group
        ]
        placed = [p for p in placed if p is not None]
        canvases = [canvas for canvas, _ in placed]
        if isinstance(detector, MTCNN):
            low = max(min_face, min(on_canvas) / config.canvas_range)
            high = max(low, max(on_canvas) * config.canvas_range)
            found = detector.detect_batch(canvases, low, high)
        else:
            found = [detector.detect(canvas) for canvas in canvases]
        for (_, (shift, per_px, window)), in_canvas in zip(placed, found, strict=True):
            moved = (_moved(face, shift, per_px) for face in in_canvas)
            faces += [face for face in moved if not _cut(face.box, window, image.shape[1::-1])]
    return faces


def _canvas(
    image: np.ndarray, box: np.ndarray, width: float, scale: float, side: int, pad: float
) -> tuple[np.ndarray, tuple] | None:
    """The ``side`` px canvas around ``box``: the square of ``(1 + 2 pad) width`` frame px
    about its centre, shrunk by ``scale``, black outside the frame; with (shift, frame px per
    canvas px, the frame window it shows), or None when the square misses the frame."""
    h, w = image.shape[:2]
    half = (0.5 + pad) * width  # frame px
    cx, cy = (float(box[0]) + float(box[2])) / 2, (float(box[1]) + float(box[3])) / 2
    left, top = cx - half, cy - half
    # the part of the square inside the frame, and where it lands on the canvas
    fx1, fy1 = max(int(np.floor(left)), 0), max(int(np.floor(top)), 0)
    fx2, fy2 = min(int(np.ceil(cx + half)), w), min(int(np.ceil(cy + half)), h)
    if fx2 - fx1 < 1 or fy2 - fy1 < 1:
        return None
    cw = min(max(int(round((fx2 - fx1) * scale)), 1), side)
    ch = min(max(int(round((fy2 - fy1) * scale)), 1), side)
    part = image[fy1:fy2, fx1:fx2]
    if (cw, ch) != (fx2 - fx1, fy2 - fy1):
        part = cv2.resize(part, (cw, ch), interpolation=cv2.INTER_AREA)
    ox = min(max(int(round((fx1 - left) * scale)), 0), side - cw)
    oy = min(max(int(round((fy1 - top) * scale)), 0), side - ch)
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[oy : oy + ch, ox : ox + cw] = part
    # canvas pixel (ox, oy) is frame pixel (fx1, fy1), per_px frame px per canvas px
    per_px = np.array([(fx2 - fx1) / cw, (fy2 - fy1) / ch], np.float32)
    shift = np.array([fx1, fy1], np.float32) - np.array([ox, oy], np.float32) * per_px
    return canvas, (shift, per_px, (fx1, fy1, fx2, fy2))


def _cut(box: np.ndarray, window: Region, size: tuple[int, int]) -> bool:
    """Whether ``box`` reaches an edge of ``window`` that is inside the frame (of ``size``, w
    x h): a face cut by a canvas's edge, whole on a neighbouring canvas or the next full pass."""
    x1, y1, x2, y2 = window
    return bool(
        (x1 > 0 and box[0] <= x1 + 1)
        or (y1 > 0 and box[1] <= y1 + 1)
        or (x2 < size[0] and box[2] >= x2 - 1)
        or (y2 < size[1] and box[3] >= y2 - 1)
    )


def _moved(face: Face, shift: np.ndarray, per_px: np.ndarray) -> Face:
    """``face`` of a crop or canvas, in frame coordinates: ``frame = crop * per_px + shift``."""
    return Face(
        face.box * np.tile(per_px, 2) + np.tile(shift, 2),
        face.score,
        face.landmarks * per_px + shift,
        face.kind,
    )
