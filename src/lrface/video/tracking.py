"""Linking a frame's faces to tracks, with norfair (Tryolabs' tracker, maintained fork).

Why norfair: it tracks any points with a Kalman filter and greedy nearest-first matching under
a distance we choose, which suits faces of 10-40 px that can move more than their own width between
sampled frames (box IoU, as in SORT/ByteTrack, is zero then). It is pure Python over numpy and
scipy, both already dependencies. We install it as ``norfair-enough``, the maintained fork
that imports as ``norfair``: upstream ``norfair`` 2.3.0 pins ``numpy<2`` and would downgrade
numpy; supervision 0.31 no longer ships ByteTrack, and Roboflow's ``trackers`` pulls the GUI
``opencv-python`` beside our headless OpenCV.

Distance: the gap between a detected box's centre and the track's predicted centre (the Kalman
estimate moved by the track's velocity) plus the change of width, in units of the smaller of
the two widths, so the rule is the same at 12 px and at 40 px and a large box (a near face, a
false detection) next to a small face's track is far from it. Fast small faces (a
12 px face walking 28 px between processed frames moves 2.3 of its widths) need two things:

- a velocity learnt from the first two faces: norfair's Kalman filter starts a track with a
  velocity prior of 1 px per frame, so it learns a steady walk only over several frames and
  meanwhile predicts a small face more than its width behind; ``velocity_std`` widens that
  prior;
- a wider gate for a track seen once, whose velocity is not known yet (``first_distance``).
  norfair matches such still-initializing tracks in a second pass, to the faces the
  established tracks left over (as ByteTrack's second association), so the wide gate never
  lets a new track take a face an established one could have.

A face therefore joins an established track within ``max_distance`` widths of where its
steady motion puts it, and the second face of a new track within ``first_distance`` widths of
the first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
from norfair import Detection, OptimizedKalmanFilterFactory, Tracker
from norfair.tracker import TrackedObject

from lrface.detect import Face


@dataclass
class TrackerConfig:
    """Gates in face widths (see the module docstring). ``max_distance``: gate of a track seen
    at least twice, from its predicted centre; ``first_distance``: gate of a track seen once
    (its velocity unknown), from its first face; ``velocity_std``: the Kalman prior's spread of
    a new track's velocity, px per processed frame (wide: the first two faces set it);
    ``hit_counter_max``: processed frames a track survives without a detection;
    ``initialization_delay``: detections before a track counts (shorter ones are discarded as
    false detections)."""

    max_distance: float = 1.5
    first_distance: float = 4.0
    velocity_std: float = 30.0
    hit_counter_max: int = 8
    initialization_delay: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.max_distance <= self.first_distance or self.velocity_std <= 0:
            raise ValueError(
                "tracker gates must satisfy 0 < max_distance <= first_distance and "
                f"velocity_std > 0: {self}"
            )


def _points(face: Face) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return np.array([[(x1 + x2) / 2, (y1 + y2) / 2], [x2 - x1, y2 - y1]])


def face_distance(
    detection: Detection, track: TrackedObject, max_distance: float, first_distance: float
) -> float:
    """Centre gap to the track's predicted centre plus width change, over the smaller of the
    two widths (so a much larger box near a small face is far, not close), divided by the
    track's gate (``first_distance`` while it has one face, ``max_distance`` after): under 1
    is a match."""
    (cx, cy), (w, _) = detection.points
    (tx, ty), (tw, _) = track.estimate
    width = max(min(float(w), float(tw)), 1.0)
    gap = (np.hypot(cx - tx, cy - ty) + abs(w - tw)) / width
    seen_once = len(track.past_detections) < 2
    return float(gap / (first_distance if seen_once else max_distance))


class FaceTracker:
    """Feed it each processed frame's faces; it says which track each face joined and which
    tracks ended (no detection for ``hit_counter_max`` processed frames)."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        # norfair warns that a Python distance is slower than its vectorized ones; with a few
        # faces per frame the cost is negligible, so the warning is kept out of the output
        log = logging.getLogger("norfair.tracker")
        level = log.level
        log.setLevel(logging.ERROR)
        c = self.config
        self._tracker = Tracker(
            distance_function=partial(
                face_distance, max_distance=c.max_distance, first_distance=c.first_distance
            ),
            distance_threshold=1.0,
            hit_counter_max=c.hit_counter_max,
            initialization_delay=c.initialization_delay,
            filter_factory=OptimizedKalmanFilterFactory(vel_variance=c.velocity_std**2),
            past_detections_length=2,  # face_distance asks whether a track was seen twice
        )
        log.setLevel(level)
        self._alive: dict[int, TrackedObject] = {}

    def update(self, faces: list[Face], frame: int) -> tuple[list[tuple[int, int]], list[int]]:
        """(``(key, face index)`` for every face that joined a track, keys that ended).

        Keys are norfair's per-tracker ``initializing_id``: a track has one from its first
        detection, so faces seen while norfair is still initializing it are kept too."""
        detections = [
            Detection(_points(f), scores=np.array([f.score, f.score]), data=(frame, i))
            for i, f in enumerate(faces)
        ]
        self._tracker.update(detections)
        current = {o.initializing_id: o for o in self._tracker.tracked_objects}
        joined = [
            (key, obj.last_detection.data[1])
            for key, obj in current.items()
            if obj.last_detection is not None and obj.last_detection.data[0] == frame
        ]
        ended = [key for key in self._alive if key not in current]
        self._alive = current
        return joined, ended

    def active(self) -> list[int]:
        return list(self._alive)

    def predicted_boxes(self, young_only: bool = False) -> list[np.ndarray]:
        """``[x1, y1, x2, y2]`` where each live track's face should be in the next frame: the
        Kalman estimate moved by its velocity (for motion-gated detection). ``young_only``:
        only the tracks seen once, which die at their next miss but one."""
        boxes = []
        for obj in self._alive.values():
            if young_only and len(obj.past_detections) >= 2:
                continue
            (cx, cy), (w, h) = obj.estimate
            vx, vy = obj.estimate_velocity[0]
            cx, cy = cx + vx, cy + vy
            boxes.append(np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
        return boxes
