"""Synthetic CCTV benchmark for ``lrface watch``: LFW people walking past a camera.

How a clip is made (``make_clip``), all randomness from one seed:

- frame 320 x 240 px; background: smooth random colour noise (a 6 x 8 grid of random colours,
  upsampled bicubically) with a few random flat rectangles (doors, windows, signs): texture and
  edges for the detector to reject, but no face (a blurred LFW photo as background was tried
  first and MTCNN found the blurred face in it);
- the person: their photos (probe photos, never the enrolled one) are shown in turn, each for
  ``frames // len(photos)`` frames; MTCNN finds the face in the full-resolution photo once,
  the photo is rescaled so that box is ``size`` px wide (+-5% jitter per frame, area
  resampling) and a soft elliptical patch 2.2 face-widths across is pasted at a position that
  moves in a straight line across the frame (random height, left to right or back);
- camera effects on every frame: horizontal motion blur over 3 px, Gaussian noise (sigma 3
  grey levels) and JPEG at quality 50.

Probe people are View 2 people with at least two photos, enrolled in the gallery from their
first photo (full resolution, teacher); their clips use their other photos (up to three).
Passers-by are View 2 people not in the gallery, their clips use up to three of their photos.
A clip gives every detected face (frame level) and, through ``FaceWatcher``, tracks: the
clip's answer is its longest track (other tracks are false detections, counted).

Figures, per face size:

- closed set rank-1: frame level = correct top-1 among all probe frames (an undetected frame is
  a miss), track level = correct top-1 of the clip's track (no track is a miss);
- open set (watch list): FNIR at FPIR = p: the threshold is the (1-p) quantile of the best
  scores of passer-by frames (or tracks; no detection = no alarm), FNIR is the share of probe
  frames (tracks) not answered with the right identity at or above it.

Students must not have trained on the probe people: pass a student trained on another fold
(``--student``) only together with the matching ``--fold``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

FRAME_SIZE = (240, 320)  # h, w
PATCH_WIDTHS = 2.2


@dataclass
class ClipSpec:
    """One clip: whose ``photos`` (RGB arrays with their MTCNN face box) at which ``size``."""

    person: str
    photos: list[tuple[np.ndarray, np.ndarray]]
    size: int
    frames: int = 16
    seed: int = 0


def _soft_mask(side: int) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    c = (side - 1) / 2
    r = ((xx - c) / (0.45 * side)) ** 2 + ((yy - c) / (0.5 * side)) ** 2
    return np.clip((1.2 - r) / 0.4, 0, 1).astype(np.float32)[..., None]


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def make_background(rng: np.random.Generator) -> np.ndarray:
    """A faceless scene: smooth colour noise and flat rectangles (``FRAME_SIZE``, float32)."""
    h, w = FRAME_SIZE
    grid = rng.uniform(40, 200, (6, 8, 3)).astype(np.float32)
    bg = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(2, 6))):
        x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        rw, rh = int(rng.integers(10, w // 3)), int(rng.integers(10, h // 2))
        bg[y : y + rh, x : x + rw] = rng.uniform(20, 230, 3)
    return np.clip(bg, 0, 255)


def make_clip(spec: ClipSpec) -> list[np.ndarray]:
    """The clip's RGB frames (see the module docstring)."""
    rng = np.random.default_rng(spec.seed)
    h, w = FRAME_SIZE
    bg = make_background(rng)
    y = rng.uniform(0.25, 0.75) * h
    xs = np.linspace(0.1 * w, 0.9 * w, spec.frames)
    if rng.random() < 0.5:
        xs = xs[::-1]
    per_photo = max(1, spec.frames // len(spec.photos))
    kernel = np.full((1, 3), 1 / 3, np.float32)
    frames = []
    for t, x in enumerate(xs):
        photo, box = spec.photos[min(t // per_photo, len(spec.photos) - 1)]
        width = spec.size * rng.uniform(0.95, 1.05)
        scale = width / float(box[2] - box[0])
        side = max(4, int(round(PATCH_WIDTHS * width)))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = PATCH_WIDTHS * float(box[2] - box[0]) / 2
        # shrink the whole photo with area resampling, then cut the patch (sub-pixel shift)
        shrink = min(scale, 1.0)
        small = cv2.resize(photo, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        a = side / (2 * half * shrink)
        matrix = np.array(
            [[a, 0, -(cx - half) * shrink * a], [0, a, -(cy - half) * shrink * a]], np.float32
        )
        patch = cv2.warpAffine(small, matrix, (side, side), flags=cv2.INTER_LINEAR)
        patch = patch.astype(np.float32)
        frame = bg.copy()
        x0, y0 = int(x - side / 2), int(y - side / 2)
        x1, y1 = max(x0, 0), max(y0, 0)
        x2, y2 = min(x0 + side, w), min(y0 + side, h)
        mask = _soft_mask(side)[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
        region = patch[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
        frame[y1:y2, x1:x2] = mask * region + (1 - mask) * frame[y1:y2, x1:x2]
        frame = cv2.filter2D(frame, -1, kernel)
        frame += rng.normal(0, 3, frame.shape).astype(np.float32)
        frames.append(_jpeg(np.clip(frame, 0, 255).astype(np.uint8), 50))
    return frames


def fnir_at_fpir(
    mated_correct: np.ndarray,
    mated_scores: np.ndarray,
    nonmated_scores: np.ndarray,
    fpir: float,
) -> tuple[float, float]:
    """(FNIR, threshold) at ``fpir``: the threshold lets through ``fpir`` of the non-mated
    searches (their best scores; -inf for a search with no face); a mated search counts as
    found when its top-1 is right and scores at or above the threshold."""
    nonmated = np.sort(np.asarray(nonmated_scores, np.float64))[::-1]
    allowed = int(np.floor(fpir * len(nonmated)))
    # strictly above the (allowed+1)-th highest non-mated score: at most ``allowed`` alarms
    threshold = (
        float(np.nextafter(nonmated[allowed], np.inf)) if allowed < len(nonmated) else -np.inf
    )
    found = np.asarray(mated_correct, bool) & (np.asarray(mated_scores) >= threshold)
    return float(1 - found.mean()), threshold


@dataclass
class ClipResult:
    """Top-1 (name, score) per probe frame (None: no face) and of the clip's track."""

    person: str
    enrolled: bool
    size: int
    frame_top: list[tuple[str, float] | None]
    track_top: dict[str, tuple[str, float] | None] = field(default_factory=dict)
    extra_tracks: int = 0


def run_clip(frames: list[np.ndarray], spec: ClipSpec, enrolled: bool, watcher, weightings):
    """Frame-level top-1 of every detected face and the top-1 of the clip's longest track,
    aggregated under each of ``weightings`` (one detection and embedding pass)."""
    from lrface.video.aggregate import aggregate, face_weights
    from lrface.video.sources import Frame

    result = ClipResult(spec.person, enrolled, spec.size, [None] * len(frames))
    events = list(watcher.watch(Frame(i, i / 25, f) for i, f in enumerate(frames)))
    for event in events:
        tops = watcher.searcher(np.stack([o.embedding for o in event.observations]), 1)
        for o, top in zip(event.observations, tops, strict=True):
            best = result.frame_top[o.frame]
            if top and (best is None or top[0][1] > best[1]):
                result.frame_top[o.frame] = top[0]
    if not events:
        result.track_top = dict.fromkeys(weightings)
        return result
    main = max(events, key=lambda e: len(e.observations))
    result.extra_tracks = len(events) - 1
    embeddings = np.stack([o.embedding for o in main.observations])
    widths = np.array([o.face.width for o in main.observations])
    scores = np.array([o.face.score for o in main.observations])
    for weighting in weightings:
        pooled = aggregate(embeddings, face_weights(widths, scores, weighting))
        top = watcher.searcher(pooled[None], 1)[0]
        result.track_top[weighting] = top[0] if top else None
    return result


def summarize(results: list[ClipResult], weightings: tuple[str, ...]) -> dict:
    """Per size: frame/track rank-1 and FNIR at FPIR 0.01 / 0.1, frame and track level."""
    out: dict = {}
    for size in sorted({r.size for r in results}):
        rows = [r for r in results if r.size == size]
        mated = [r for r in rows if r.enrolled]
        non = [r for r in rows if not r.enrolled]

        def level(tops: list[list], people: list[str]) -> tuple[np.ndarray, np.ndarray]:
            correct = np.array(
                [t is not None and t[0] == p for t, p in zip(tops, people, strict=True)]
            )
            scores = np.array([t[1] if t is not None else -np.inf for t in tops])
            return correct, scores

        frame_c, frame_s = level(
            [t for r in mated for t in r.frame_top], [r.person for r in mated for _ in r.frame_top]
        )
        _, frame_non = level(
            [t for r in non for t in r.frame_top], [""] * sum(len(r.frame_top) for r in non)
        )
        entry = {
            "probe_clips": len(mated),
            "passerby_clips": len(non),
            "frame": {"rank1": float(frame_c.mean())},
            "tracks_detected": float(
                np.mean([r.track_top[weightings[0]] is not None for r in mated])
            ),
            "extra_tracks": int(sum(r.extra_tracks for r in rows)),
        }
        for fpir in (0.01, 0.1):
            entry["frame"][f"fnir@fpir={fpir}"] = fnir_at_fpir(frame_c, frame_s, frame_non, fpir)[0]
        for weighting in weightings:
            c, s = level([r.track_top[weighting] for r in mated], [r.person for r in mated])
            _, s_non = level([r.track_top[weighting] for r in non], [""] * len(non))
            entry[f"track/{weighting}"] = {"rank1": float(c.mean())} | {
                f"fnir@fpir={fpir}": fnir_at_fpir(c, s, s_non, fpir)[0] for fpir in (0.01, 0.1)
            }
        out[str(size)] = entry
    return out
