"""``FaceWatcher``: frames in, one event per finished track out.

Each processed frame: detect faces (by default only where the picture moves and around live
tracks, the whole frame every ``gate.full_every``-th frame: ``lrface.video.motion``), hand
them to the tracker, embed the faces that joined a track (teacher or student by face size,
through the ``embed`` callable, normally ``FacePipeline.embed_faces``). A track
that ends (no detection for the tracker's patience) is aggregated (``aggregate``) and decided
(``decide``) into a ``TrackEvent``.

``watch`` runs this as a pipeline of four threads when ``config.pipelined`` (the default):
decoding the next frames and the motion gate's look at them (``observe``), detecting the
frames it searches whole (``search_whole``, up to a gate cycle ahead: neither needs tracks),
detecting the rest and tracking (``locate``), and
embedding and deciding (``record``, in the caller's thread), each handing its results on in
frame order through a short queue. Detection of a frame needs the tracks of the frame before,
not their embeddings, so the stages overlap; OpenCV, PyTorch and ONNX Runtime release the GIL
while they compute, so on two cores one camera gets both (docs/video.md, "Real footage").

Tracks with fewer than ``min_faces`` faces are dropped as spurious detections and counted
(``dropped_tracks``). ``flush`` ends every open track (end of video, an error, Ctrl-C), so
nothing seen is lost.

    watcher = FaceWatcher(pipeline.detector, pipeline.embed_faces, searcher, thresholds)
    for event in watcher.watch(open_source("cam.mp4")):
        print(event.to_dict())
"""

from __future__ import annotations

import heapq
import queue
import threading
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
from lrface.video.motion import GateConfig, Motion, MotionGate, detect_planned
from lrface.video.sources import Frame
from lrface.video.tracking import FaceTracker, TrackerConfig

Embedder = Callable[[np.ndarray, list[Face]], list[EmbeddedFace]]


@dataclass
class WatchConfig:
    """``weighting``: see ``lrface.video.aggregate``; ``top_k`` identities per event;
    ``gate``: motion-gated detection (``lrface.video.motion``; ``full_every=1`` turns it off);
    ``pipelined``: ``watch`` decodes, detects and embeds in four threads (module docstring);
    ``enough_faces``: once a track has pooled this many faces, a new face of it is embedded only
    when its pooling weight (``weighting`` without the embeddings: width x score for
    ``size-score`` and ``quality``) is over ``enough_gain`` times the ``enough_faces``-th
    heaviest weight the track has pooled, so that it would enter the track's heaviest
    ``enough_faces``: a person walking towards the camera keeps being embedded as the face
    grows (every few frames, each time by ``enough_gain``), one standing or walking away is
    no longer; 0 embeds every face; never fewer than ``min_faces`` (docs/video.md, "Enough
    faces")."""

    weighting: str = "size-score"
    top_k: int = 5
    min_faces: int = 2
    crop_margin: float = 0.5
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    pipelined: bool = True
    enough_faces: int = 0
    enough_gain: float = 1.1


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
class Located:
    """One frame after detection and tracking: its faces, ``(track key, face index)`` of those
    that joined a track, and the keys of the tracks that ended with it."""

    frame: Frame
    faces: list[Face]
    joined: list[tuple[int, int]]
    ended: list[int]


@dataclass
class _Track:
    track_id: int
    observations: list[Observation] = field(default_factory=list)
    best_weight: float = -1.0
    crop: np.ndarray | None = None
    heaviest: list[float] = field(default_factory=list)
    """Min-heap of the heaviest ``enough_faces`` weights pooled (with ``enough_faces``)."""

    def wanted(self, weight: float, enough: int, gain: float) -> bool:
        """Whether a face of ``weight`` is to be embedded: always until ``enough`` faces are
        pooled (or with ``enough`` 0), then only over ``gain`` x the ``enough``-th heaviest."""
        return enough <= 0 or len(self.heaviest) < enough or weight > gain * self.heaviest[0]

    def pooled(self, weight: float, enough: int) -> None:
        """Count a face of ``weight`` as pooled among the heaviest ``enough``."""
        if enough <= 0:
            return
        if len(self.heaviest) < enough:
            heapq.heappush(self.heaviest, weight)
        elif weight > self.heaviest[0]:
            heapq.heapreplace(self.heaviest, weight)


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
        self.faces_embedded = 0
        self.current: list[tuple[int, Face]] = []
        """(track id, face) of the last processed frame, for drawing."""

    def process(self, frame: Frame) -> list[TrackEvent]:
        """Take one frame; events of the tracks that ended with it."""
        return self.record(self.locate(frame))

    def locate(
        self, frame: Frame, motion: Motion | None = None, whole: list[Face] | None = None
    ) -> Located:
        """Detect ``frame``'s faces where the gate says and link them to tracks; ``motion``:
        what the gate observed in the frame, ``whole``: the faces of the whole frame, when
        already found (``search_whole``)."""
        plan = None
        if self.gate is not None:
            tracker = self.tracker
            plan = self.gate.plan_for(
                motion or self.gate.observe(frame.image),
                (frame.image.shape[1], frame.image.shape[0]),
                tracker.predicted_boxes(),
                tracker.predicted_boxes(True),
            )
        if whole is not None and (plan is None or plan.whole):
            faces = whole
        else:
            faces = detect_planned(self.detector, frame.image, plan, self.config.gate)
        joined, ended = self.tracker.update(faces, frame.index)
        self.frames_processed += 1
        self.faces_seen += len(faces)
        return Located(frame, faces, joined, ended)

    def observe(self, frame: Frame) -> tuple[Frame, Motion | None]:
        """(frame, what the gate observes in it; None without a gate), the frames taken in
        order. The pipeline runs it in the decoding thread: the gate needs no tracks."""
        return frame, self.gate.observe(frame.image) if self.gate is not None else None

    def search_whole(
        self,
    ) -> Callable[[tuple[Frame, Motion | None]], tuple[Frame, Motion | None, list[Face] | None]]:
        """A step taking ``observe``'s results in order: (frame, motion, its faces when the
        gate searches it whole, else None; without a gate every frame is searched whole). The
        pipeline runs it in a thread of its own ahead of ``locate``: the whole frames need no
        tracks, and they are most of a gated watch's detection time."""

        def step(observed: tuple[Frame, Motion | None]):
            frame, motion = observed
            whole = motion is None or motion.whole
            return frame, motion, self.detector.detect(frame.image) if whole else None

        return step

    def record(self, located: Located) -> list[TrackEvent]:
        """Embed the located faces that joined a track (those the track still wants, with
        ``enough_faces``), add them to their tracks; events of the tracks that ended with
        this frame."""
        frame, config = located.frame, self.config
        enough = max(config.enough_faces, config.min_faces) if config.enough_faces > 0 else 0
        joined = [(self._track(key), located.faces[i]) for key, i in located.joined]
        weights = face_weights(
            [f.width for _, f in joined], [f.score for _, f in joined], config.weighting
        )
        self.current = [(track.track_id, face) for track, face in joined]
        for (track, face), weight in zip(joined, weights, strict=True):
            if weight > track.best_weight:
                track.best_weight = float(weight)
                track.crop = face_crop(frame.image, face, config.crop_margin)
        wanted = [
            (track, face, weight)
            for (track, face), weight in zip(joined, weights, strict=True)
            if track.wanted(weight, enough, config.enough_gain)
        ]
        faces = [face for _, face, _ in wanted]
        embedded = self.embed(frame.image, faces) if faces else []
        if len(embedded) != len(faces):
            raise RuntimeError(f"embedder returned {len(embedded)} embeddings for {len(faces)}")
        self.faces_embedded += len(embedded)
        for (track, _, weight), e in zip(wanted, embedded, strict=True):
            track.observations.append(
                Observation(frame.index, frame.time, e.face, e.embedding, e.encoder, e.native_size)
            )
            track.pooled(float(weight), enough)
        return self._finish(located.ended)

    def _track(self, key: int) -> _Track:
        """The open track of tracker key ``key``, started when new."""
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(self._next_id)
            self._next_id += 1
        return track

    def flush(self) -> list[TrackEvent]:
        """End every open track (end of input, error or interruption)."""
        return self._finish(list(self._tracks))

    def watch(
        self, frames: Iterable[Frame], after_frame: Callable[[Frame], None] | None = None
    ) -> Iterator[TrackEvent]:
        """Events as tracks end, then those still open when ``frames`` is exhausted.

        ``after_frame(frame)`` runs once each frame is recorded (``current`` and ``label``
        describe it then). An error reading ``frames`` is raised after the frames before it
        are recorded; the open tracks are not flushed then (call ``flush``)."""
        if self.config.pipelined:
            ahead = self.config.gate.full_every + 2  # a whole cycle of the gate
            observed = _ahead(frames, self.observe)
            searched = _ahead(observed, self.search_whole(), depth=ahead)
            located = _ahead(searched, lambda item: self.locate(*item))
        else:
            located = map(self.locate, frames)
        for item in located:
            yield from self.record(item)
            if after_frame is not None:
                after_frame(item.frame)
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
        return embedding, decide(top, self.thresholds(encoder, size, len(observations)))


def track_probe(observations: list[Observation], weights: np.ndarray) -> tuple[str, int]:
    """What a track's threshold is looked up by: the encoder carrying most of its weight and
    the median native size of that encoder's faces."""
    by_encoder: Counter[str] = Counter()
    for o, w in zip(observations, weights, strict=True):
        by_encoder[o.encoder] += float(w)
    encoder = by_encoder.most_common(1)[0][0]
    return encoder, int(np.median([o.size for o in observations if o.encoder == encoder]))


_END = object()


def _ahead(items: Iterable, step: Callable | None = None, depth: int = 4) -> Iterator:
    """``items`` (each passed through ``step`` when given), produced by a background thread up
    to ``depth`` ahead of the consumer.

    An exception raised by ``items`` or ``step`` reaches the consumer in its place in the
    sequence. When the consumer stops early (the generator is closed), the thread stops at its
    next item and closes ``items`` (so a chain of these stops whole)."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((step(item) if step is not None else item, None)):
                    return
            put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((_END, exc))
        finally:
            if hasattr(items, "close"):
                items.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item, error = out.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
