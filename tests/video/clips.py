"""Tiny generated clips for the video tests: coloured squares ("people") moving over a grey
background, a detector that finds them by colour and an embedder that embeds the colour, so
tracking, aggregation and decisions are tested without model weights."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lrface.detect import Face
from lrface.pipeline import EmbeddedFace
from lrface.vectors import l2_normalize

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}
STRANGER = ("yellow", (220, 220, 30))
SIZE = (96, 160)  # h, w
SIDE = 20


def crossing_frames(n: int = 24, stranger: bool = False) -> list[np.ndarray]:
    """Red walks left to right, blue right to left a few px lower: they cross mid-clip."""
    h, w = SIZE
    frames = []
    for t in range(n):
        image = np.full((h, w, 3), 90, np.uint8)
        f = t / (n - 1)
        red_x = int(8 + f * (w - 8 - SIDE - 8))
        blue_x = int(w - 8 - SIDE - f * (w - 8 - SIDE - 8))
        image[30 : 30 + SIDE, red_x : red_x + SIDE] = COLOURS["red"]
        image[38 : 38 + SIDE, blue_x : blue_x + SIDE] = COLOURS["blue"]
        if stranger:
            image[70 : 70 + 16, 60 + t : 76 + t] = STRANGER[1]
        frames.append(image)
    return frames


def fast_frames(step: int = 30, side: int = 10, width: int = 480) -> list[np.ndarray]:
    """Red walks left to right and blue right to left, half a face lower, each ``step`` px per
    frame (3 widths of a 10 px face): they pass each other mid-clip."""
    h = SIZE[0]
    frames = []
    for t in range((width - 16 - side) // step + 1):
        image = np.full((h, width, 3), 90, np.uint8)
        red_x, blue_x = 8 + t * step, width - 8 - side - t * step
        image[40 : 40 + side, red_x : red_x + side] = COLOURS["red"]
        image[45 : 45 + side, blue_x : blue_x + side] = COLOURS["blue"]
        frames.append(image)
    return frames


def write_avi(frames: list[np.ndarray], path: Path, fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for image in frames:
        writer.write(np.ascontiguousarray(image[:, :, ::-1]))
    writer.release()
    return path


class ColourDetector:
    """Boxes of the pixels near each known colour (one face per colour present)."""

    name = "colour"

    def detect(self, image: np.ndarray) -> list[Face]:
        faces = []
        for rgb in [*COLOURS.values(), STRANGER[1]]:
            mask = (np.abs(image.astype(int) - rgb).max(axis=2) < 50).astype(np.uint8)
            if mask.sum() < 20:
                continue
            x, y, w, h = cv2.boundingRect(mask)
            box = np.array([x, y, x + w, y + h], np.float32)
            cx, cy = x + w / 2, y + h / 2
            marks = np.array([[cx - 3, cy - 2], [cx + 3, cy - 2], [cx, cy], [cx - 2, cy + 3],
                              [cx + 2, cy + 3]], np.float32)  # fmt: skip
            faces.append(Face(box, 0.99, marks))
        return faces

    def detect_batch(self, images):
        return [self.detect(i) for i in images]


def colour_embed(image: np.ndarray, faces: list[Face]) -> list[EmbeddedFace]:
    """The median colour of each box, centred on grey, as a unit 3-d embedding."""
    out = []
    for face in faces:
        x1, y1, x2, y2 = (int(v) for v in face.box)
        colour = np.median(image[y1:y2, x1:x2].reshape(-1, 3), axis=0) - 90.0
        unit = l2_normalize(colour[None])[0]
        out.append(EmbeddedFace(face, unit, "colour", "teacher", 150, int(face.width)))
    return out


def colour_searcher(embeddings: np.ndarray, k: int, probes=None) -> list[list[tuple[str, float]]]:
    names = list(COLOURS)
    templates = l2_normalize(np.array([COLOURS[n] for n in names], np.float32) - 90.0)
    scores = embeddings @ templates.T
    return [[(names[j], float(row[j])) for j in np.argsort(-row)[:k]] for row in scores]
