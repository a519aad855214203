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
  moves in a straight line across the frame (random height, left to right or back); with
  ``end_size`` the nominal width shrinks geometrically from ``size`` at the first frame to
  ``end_size`` at the last (a person walking away from the camera);
- camera effects on every frame (``Camera``): horizontal motion blur over ``blur_px`` px,
  Gaussian noise (sigma ``noise`` grey levels) and JPEG at quality ``jpeg``; the default is
  the original recipe (3 px, sigma 3, quality 50).

Probe people are View 2 people with at least two photos, enrolled in the gallery from their
first photo (full resolution, teacher); their clips use their other photos (up to three).
Passers-by are View 2 people not in the gallery, their clips use up to three of their photos.
A clip gives every detected face (frame level) and, through ``FaceWatcher``, tracks. Frames
are grouped into face-size bins by their nominal face width (a clip of fixed size is one bin);
within a bin the clip's answer is the track with the most faces in that bin, judged only from
those faces (its other tracks are counted as extra: false detections or a fragmented track).

Figures, per bin:

- detection rate: the share of the bin's frames (probe and passer-by clips) in which a
  detected face's centre lies inside the pasted face's true box;
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


@dataclass(frozen=True)
class Camera:
    """Effects on every frame: horizontal motion blur over ``blur_px`` px (1: none), Gaussian
    noise of sigma ``noise`` grey levels, JPEG at quality ``jpeg`` (None: none)."""

    blur_px: int = 3
    noise: float = 3.0
    jpeg: int | None = 50

    def __post_init__(self) -> None:
        if self.blur_px < 1 or self.noise < 0 or not (self.jpeg is None or 1 <= self.jpeg <= 100):
            raise ValueError(f"bad camera: {self}")

    @classmethod
    def parse(cls, text: str) -> Camera:
        """``blur,noise,jpeg`` (e.g. ``3,3,50``; ``1,0,none`` = clean)."""
        try:
            blur, noise, jpeg = text.split(",")
            return cls(int(blur), float(noise), None if jpeg == "none" else int(jpeg))
        except ValueError as exc:
            raise ValueError(f"camera must be 'blur,noise,jpeg' such as 3,3,50: {exc}") from None

    def label(self) -> str:
        return f"blur {self.blur_px} px, noise {self.noise:g}, JPEG {self.jpeg or 'off'}"


@dataclass
class ClipSpec:
    """One clip: whose ``photos`` (RGB arrays with their MTCNN face box) at which ``size``
    (shrinking to ``end_size`` at the last frame if given), filmed by ``camera``."""

    person: str
    photos: list[tuple[np.ndarray, np.ndarray]]
    size: int
    frames: int = 16
    seed: int = 0
    end_size: int | None = None
    camera: Camera = field(default_factory=Camera)

    def frame_sizes(self) -> np.ndarray:
        """Nominal face width per frame (before the +-5% jitter)."""
        end = self.size if self.end_size is None else self.end_size
        return np.geomspace(self.size, end, self.frames)


@dataclass
class Clip:
    """Frames and, per frame, the pasted face's true box ``[x1, y1, x2, y2]`` and nominal
    width."""

    frames: list[np.ndarray]
    boxes: np.ndarray
    sizes: np.ndarray


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


def make_clip(spec: ClipSpec) -> Clip:
    """The clip's RGB frames and true face boxes (see the module docstring)."""
    rng = np.random.default_rng(spec.seed)
    h, w = FRAME_SIZE
    bg = make_background(rng)
    y = rng.uniform(0.25, 0.75) * h
    xs = np.linspace(0.1 * w, 0.9 * w, spec.frames)
    if rng.random() < 0.5:
        xs = xs[::-1]
    per_photo = max(1, spec.frames // len(spec.photos))
    camera = spec.camera
    kernel = np.full((1, camera.blur_px), 1 / camera.blur_px, np.float32)
    sizes = spec.frame_sizes()
    frames, boxes = [], []
    for t, x in enumerate(xs):
        photo, box = spec.photos[min(t // per_photo, len(spec.photos) - 1)]
        width = sizes[t] * rng.uniform(0.95, 1.05)
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
        fx, fy = x0 + side / 2, y0 + side / 2  # where the face box's centre landed
        fh = width * float(box[3] - box[1]) / float(box[2] - box[0])
        boxes.append([fx - width / 2, fy - fh / 2, fx + width / 2, fy + fh / 2])
        if camera.blur_px > 1:
            frame = cv2.filter2D(frame, -1, kernel)
        # drawn at every level (also 0), so clips differing only in the camera share the rest
        frame += camera.noise * rng.normal(0, 1, frame.shape).astype(np.float32)
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        frames.append(frame if camera.jpeg is None else _jpeg(frame, camera.jpeg))
    return Clip(frames, np.array(boxes, np.float32), sizes)


class Replay:
    """A clip's detections, made once by ``detector`` and replayed to each encoder
    configuration's watcher (a ``FaceDetector`` over exactly these frames)."""

    name = "mtcnn"

    def __init__(self, detector, frames: list[np.ndarray]):
        self.min_face = detector.min_face
        self._faces = {id(f): detector.detect(f) for f in frames}

    def detect(self, image: np.ndarray):
        return self._faces[id(image)]

    def detect_batch(self, images):
        return [self.detect(i) for i in images]


def face_photo(path, detector):
    """An LFW photo (RGB) and its largest detected face, or None when none is found."""
    from lrface.data.images import load_rgb

    image = load_rgb(path)
    faces = detector.detect(image)
    if not faces:
        return None
    return image, max(faces, key=lambda f: f.area)


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


Bin = tuple[float, float]
"""Face widths ``[low, high)`` in px."""


def bin_label(b: Bin) -> str:
    low, high = b
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def frame_bins(sizes: np.ndarray, bins: list[Bin]) -> list[str | None]:
    """The label of each frame's bin (None: in none): ``[low, high)``, the last bin also takes
    its ``high``; a bin ``(s, s)`` takes sizes equal to s."""
    out: list[str | None] = []
    for size in sizes:
        found = None
        for b in bins:
            last = b is bins[-1] and np.isclose(size, b[1])
            if np.isclose(size, b[0]) or b[0] <= size < b[1] or last:
                found = bin_label(b)
                break
        out.append(found)
    return out


@dataclass
class BinResult:
    """One clip within one face-size bin: top-1 (name, score) per frame (None: no face), how
    many of those frames had a face detected on the true face, and the top-1 of the clip's
    track (most faces in the bin, pooled from those faces only) under each weighting."""

    frame_top: list[tuple[str, float] | None] = field(default_factory=list)
    detected: int = 0
    track_top: dict[str, tuple[str, float] | None] = field(default_factory=dict)
    extra_tracks: int = 0
    track_probe: tuple[str, int] | None = None
    """What that track's open-set threshold is looked up by under the watcher's own weighting
    (``lrface.video.watcher.track_probe``: main encoder, median native size)."""
    track_embedding: np.ndarray | None = None
    """That track's pooled unit embedding under the watcher's own weighting (to score it
    against every gallery identity, not only the top-1)."""


@dataclass
class ClipResult:
    person: str
    enrolled: bool
    bins: dict[str, BinResult]


def on_face(face, box: np.ndarray) -> bool:
    """Whether a detection's centre lies inside the true face box (it found the face)."""
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    return bool(box[0] <= cx <= box[2] and box[1] <= cy <= box[3])


def run_clip(
    clip: Clip,
    spec: ClipSpec,
    enrolled: bool,
    watcher,
    weightings,
    bins: list[Bin],
    whole: str | None = None,
):
    """Frame-level top-1 of every detected face and, per bin, the top-1 of the clip's track
    with the most faces in the bin, pooled from those faces under each of ``weightings`` (one
    detection and embedding pass). ``whole``: also an entry of that label for the clip's
    track with the most faces overall, pooled from all of them (what ``lrface watch`` decides
    on)."""
    from lrface.video.sources import Frame

    labels = frame_bins(clip.sizes, bins)
    frame_top: list[tuple[str, float] | None] = [None] * len(clip.frames)
    detected = [False] * len(clip.frames)
    frames = (Frame(i, i / 25, f) for i, f in enumerate(clip.frames))
    events = list(watcher.watch(frames))
    for event in events:
        tops = watcher.searcher(np.stack([o.embedding for o in event.observations]), 1)
        for o, top in zip(event.observations, tops, strict=True):
            best = frame_top[o.frame]
            if top and (best is None or top[0][1] > best[1]):
                frame_top[o.frame] = top[0]
            detected[o.frame] |= on_face(o.face, clip.boxes[o.frame])
    result = ClipResult(spec.person, enrolled, {})
    groups = [
        (bin_label(b), {i for i, lab in enumerate(labels) if lab == bin_label(b)}) for b in bins
    ]
    if whole is not None:
        groups.append((whole, set(range(len(clip.frames)))))
    for label, frames in groups:
        if not frames:
            continue
        entry = result.bins[label] = BinResult(
            [frame_top[i] for i in sorted(frames)], sum(detected[i] for i in frames)
        )
        in_bin = [[o for o in e.observations if o.frame in frames] for e in events]
        _pool_main(entry, [obs for obs in in_bin if obs], watcher, weightings)
    return result


def _pool_main(entry: BinResult, tracks: list, watcher, weightings) -> None:
    """Fill ``entry``'s track fields from the longest of ``tracks`` (lists of observations)."""
    from lrface.video.aggregate import aggregate, face_weights
    from lrface.video.watcher import track_probe

    if not tracks:
        entry.track_top = dict.fromkeys(weightings)
        return
    main = max(tracks, key=len)
    entry.extra_tracks = len(tracks) - 1
    embeddings = np.stack([o.embedding for o in main])
    widths = np.array([o.face.width for o in main])
    scores = np.array([o.face.score for o in main])
    own = face_weights(widths, scores, watcher.config.weighting, embeddings)
    entry.track_probe = track_probe(main, own)
    for weighting in weightings:
        pooled = aggregate(embeddings, face_weights(widths, scores, weighting, embeddings))
        if weighting == watcher.config.weighting:
            entry.track_embedding = pooled
        top = watcher.searcher(pooled[None], 1)[0]
        entry.track_top[weighting] = top[0] if top else None


def _level(tops: list, people: list[str]) -> tuple[np.ndarray, np.ndarray]:
    correct = np.array([t is not None and t[0] == p for t, p in zip(tops, people, strict=True)])
    scores = np.array([t[1] if t is not None else -np.inf for t in tops])
    return correct, scores


def summarize(results: list[ClipResult], weightings: tuple[str, ...]) -> dict:
    """Per bin: detection rate, frame/track rank-1 and FNIR at FPIR 0.01 / 0.1."""
    out: dict = {}
    labels = []
    for r in results:
        labels += [label for label in r.bins if label not in labels]
    for label in labels:
        rows = [(r, r.bins[label]) for r in results if label in r.bins]
        mated = [(r, b) for r, b in rows if r.enrolled]
        non = [b for r, b in rows if not r.enrolled]
        frame_c, frame_s = _level(
            [t for _, b in mated for t in b.frame_top],
            [r.person for r, b in mated for _ in b.frame_top],
        )
        non_tops = [t for b in non for t in b.frame_top]
        _, frame_non = _level(non_tops, [""] * len(non_tops))
        frames = sum(len(b.frame_top) for _, b in rows)
        entry = {
            "probe_clips": len(mated),
            "passerby_clips": len(non),
            "frames": frames,
            "detection_rate": sum(b.detected for _, b in rows) / max(frames, 1),
            "frame": {"rank1": float(frame_c.mean()) if len(frame_c) else float("nan")},
            "tracks_detected": float(
                np.mean([b.track_top[weightings[0]] is not None for _, b in mated])
            ),  # fmt: skip
            "extra_tracks": int(sum(b.extra_tracks for _, b in rows)),
        }
        for fpir in (0.01, 0.1):
            entry["frame"][f"fnir@fpir={fpir}"] = fnir_at_fpir(frame_c, frame_s, frame_non, fpir)[0]
        for weighting in weightings:
            c, s = _level([b.track_top[weighting] for _, b in mated], [r.person for r, _ in mated])
            _, s_non = _level([b.track_top[weighting] for b in non], [""] * len(non))
            entry[f"track/{weighting}"] = {"rank1": float(c.mean())} | {
                f"fnir@fpir={fpir}": fnir_at_fpir(c, s, s_non, fpir)[0] for fpir in (0.01, 0.1)
            }
        out[label] = entry
    return out
