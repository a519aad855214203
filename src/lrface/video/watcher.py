"""``FaceWatcher``: frames in, one event per finished track out.

Each processed frame: detect faces (by default only where the picture moves and around live
tracks, the whole frame every ``gate.full_every``-th frame: ``lrface.video.motion``), embed
them (teacher or student by face size, through the ``embed`` callable, normally
``FacePipeline.embed_faces``), hand them to the tracker. A track
that ends (no detection for the tracker's patience) is aggregated (``aggregate``) and decided
(``decide``) into a ``TrackEvent``. Tracks with fewer than ``min_faces`` faces are dropped as
spurious detections and counted (``dropped_tracks``). ``flush`` ends every open track (end of
video, an error, Ctrl-C), so nothing seen is lost.

    watcher = FaceWatcher(pipeline.detector, pipeline.embed_faces, searcher, thresholds)
    for event in watcher.watch(open_source("cam.mp4")):
        print(event.to_dict())
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from lrface.calibration import FaceRef, as_resolution
from lrface.detect import Face, FaceDetector
from lrface.pipeline import EmbeddedFace
from lrface.search.decision import Decision, Searcher, decide
from lrface.video.aggregate import aggregate, face_weights
from lrface.video.decide import ThresholdFn
from lrface.video.motion import GateConfig, MotionGate, detect_regions
from lrface.video.sources import Frame
from lrface.video.tracking import FaceTracker, TrackerConfig

Embedder = Callable[[np.ndarray, list[Face]], list[EmbeddedFace]]


@dataclass
class WatchConfig:
    """``weighting``: see ``lrface.video.aggregate``; ``top_k`` identities per event;
    ``gate``: motion-gated detection (``lrface.video.motion``; ``full_every=1`` turns it off)."""

    weighting: str = "size-score"
    top_k: int = 5
    min_faces: int = 2
    crop_margin: float = 0.5
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass
class Observation:
    """One face of a track: where and when, its embedding and the encoder that made it."""

    frame: int
    time: float
    face: Face
    embedding: np.ndarray
    encoder: str
    size: int


@dataclass
class TrackEvent:
    """A finished track and its decision; ``crop`` is the best-weighted face with a margin."""

    track_id: int
    observations: list[Observation]
    embedding: np.ndarray
    decision: Decision
    weighting: str
    crop: np.ndarray

    @property
    def encoders(self) -> dict[str, int]:
        return dict(Counter(o.encoder for o in self.observations))

    def to_dict(self) -> dict:
        first, last = self.observations[0], self.observations[-1]
        widths = [o.face.width for o in self.observations]
        return {
            "track_id": self.track_id,
            "first_frame": first.frame,
            "last_frame": last.frame,
            "first_time": round(first.time, 3),
            "last_time": round(last.time, 3),
            **self.decision.to_dict(),
            "frames_used": len(self.observations),
            "encoders": self.encoders,
            "weighting": self.weighting,
            "median_face_px": round(float(np.median(widths)), 1),
        }


@dataclass
class _Track:
    track_id: int
    observations: list[Observation] = field(default_factory=list)
    best_weight: float = -1.0
    crop: np.ndarray | None = None


def face_crop(image: np.ndarray, face: Face, margin: float) -> np.ndarray:
    """The face's box grown by ``margin`` of its size on every side, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in face.box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    h, w = image.shape[:2]
    left, top = max(int(x1 - mx), 0), max(int(y1 - my), 0)
    right, bottom = min(int(np.ceil(x2 + mx)), w), min(int(np.ceil(y2 + my)), h)
    return image[top : max(bottom, top + 1), left : max(right, left + 1)].copy()


class FaceWatcher:
    """Detect, embed, track, and decide once per track."""

    def __init__(
        self,
        detector: FaceDetector,
        embed: Embedder,
        searcher: Searcher,
        thresholds: ThresholdFn,
        config: WatchConfig | None = None,
    ):
        self.detector = detector
        self.embed = embed
        self.searcher = searcher
        self.thresholds = thresholds
        self.config = config or WatchConfig()
        face_weights(np.ones(1), np.ones(1), self.config.weighting)  # unknown name fails here
        self.tracker = FaceTracker(self.config.tracker)
        self.gate = (
            MotionGate(getattr(detector, "min_face", 12), self.config.gate)
            if self.config.gate.full_every > 1
            else None
        )
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self.dropped_tracks = 0
        self.frames_processed = 0
        self.faces_seen = 0
        self.current: list[tuple[int, Face]] = []
        """(track id, face) of the last processed frame, for drawing."""

    def process(self, frame: Frame) -> list[TrackEvent]:
        """Take one frame; events of the tracks that ended with it."""
        regions = None
        if self.gate is not None:
            regions = self.gate.regions(frame.image, self.tracker.predicted_boxes())
        faces = detect_regions(self.detector, frame.image, regions)
        embedded = self.embed(frame.image, faces) if faces else []
        if len(embedded) != len(faces):
            raise RuntimeError(f"embedder returned {len(embedded)} embeddings for {len(faces)}")
        joined, ended = self.tracker.update(faces, frame.index)
        self.current = []
        for key, i in joined:
            track = self._tracks.get(key)
            if track is None:
                track = self._tracks[key] = _Track(self._next_id)
                self._next_id += 1
            e = embedded[i]
            track.observations.append(
                Observation(frame.index, frame.time, e.face, e.embedding, e.encoder, e.native_size)
            )
            weight = float(face_weights([e.face.width], [e.face.score], self.config.weighting)[0])
            if weight > track.best_weight:
                track.best_weight = weight
                track.crop = face_crop(frame.image, e.face, self.config.crop_margin)
            self.current.append((track.track_id, e.face))
        self.frames_processed += 1
        self.faces_seen += len(faces)
        return self._finish(ended)

    def flush(self) -> list[TrackEvent]:
        """End every open track (end of input, error or interruption)."""
        return self._finish(list(self._tracks))

    def watch(self, frames: Iterable[Frame]) -> Iterator[TrackEvent]:
        """Events as tracks end, then those still open when ``frames`` is exhausted."""
        for frame in frames:
            yield from self.process(frame)
        yield from self.flush()

    def label(self, track_id: int) -> Decision | None:
        """The decision an open track would get now (for live display)."""
        for track in self._tracks.values():
            if track.track_id == track_id and track.observations:
                return self._decide(track.observations)[1]
        return None

    def _finish(self, keys: list[int]) -> list[TrackEvent]:
        events = []
        for key in keys:
            track = self._tracks.pop(key, None)
            if track is None or not track.observations:
                continue
            if len(track.observations) < self.config.min_faces:
                self.dropped_tracks += 1
                continue
            embedding, decision = self._decide(track.observations)
            events.append(
                TrackEvent(
                    track.track_id,
                    track.observations,
                    embedding,
                    decision,
                    self.config.weighting,
                    track.crop,
                )
            )
        return sorted(events, key=lambda e: e.track_id)

    def _decide(self, observations: list[Observation]) -> tuple[np.ndarray, Decision]:
        embeddings = np.stack([o.embedding for o in observations])
        weights = face_weights(
            np.array([o.face.width for o in observations]),
            np.array([o.face.score for o in observations]),
            self.config.weighting,
            embeddings,
        )
        embedding = aggregate(embeddings, weights)
        # searched and judged as a probe of the encoder carrying most of the weight, at its
        # faces' median size (a normalized search scores it against that encoder's cohort)
        encoder, size = track_probe(observations, weights)
        probe = FaceRef(encoder, as_resolution(size))
        top = self.searcher(embedding[None], self.config.top_k, [probe])[0]
        return embedding, decide(top, self.thresholds(encoder, size))


def track_probe(observations: list[Observation], weights: np.ndarray) -> tuple[str, int]:
    """What a track's threshold is looked up by: the encoder carrying most of its weight and
    the median native size of that encoder's faces."""
    by_encoder: Counter[str] = Counter()
    for o, w in zip(observations, weights, strict=True):
        by_encoder[o.encoder] += float(w)
    encoder = by_encoder.most_common(1)[0][0]
    return encoder, int(np.median([o.size for o in observations if o.encoder == encoder]))
