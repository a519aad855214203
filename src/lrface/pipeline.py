"""From photos to answers: detect, align, embed (teacher or low-resolution student), verify.

``FacePipeline(detector, teacher, student="lrface-lr-v2", size_cutoff=None)``: a face whose
detected box is narrower than ``size_cutoff`` px (default: the student's own measured cutoff,
20 px for ``lrface-lr-v2``) is embedded by the student (the shipped one
unless another encoder, name, or ``None`` for the teacher alone, is given), every other face by
the teacher from a 150 px chip. The student's chip is warped in one interpolation straight to
the student's input size (never first to the face's native resolution and then resampled
again, which costs rank-1: docs/results.md, section 8); its
resolution, for the calibrated thresholds, is still the native one
(``lrface.detect.align.native_chip_size``).
Students are trained into the teacher's embedding space, so either kind of embedding compares
with either (and with a gallery enrolled by the teacher).

Several faces in one image: ``multi_face`` = ``all`` (default: each face is compared or
searched, and the output says which matched), ``dominant`` (the largest face, only when it is
clearly the largest: every other face narrower than ``DOMINANT_RATIO`` of it, else
MultipleFacesError; what enrolling uses), ``largest`` (the largest, whatever the others) or
``error``. Every embedded face records how many faces its image held.

Thresholds: ``lrface.calibration`` picks one per face pair from the encoder that served each
face and each face's resolution (teacher-served small faces included).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrface.calibration import (
    DEFAULT_SCORING,
    Calibration,
    FaceRef,
    ThresholdBook,
    as_resolution,
    scoring_calibration_path,
    stored_calibrations,
    track_calibrations,
)
from lrface.constants import (
    CHIP_SIZE,
    DEFAULT_SIZE_CUTOFF,
    DEFAULT_STUDENT,
    DEFAULT_TEACHER,
    SEARCH_PROBE_FLIP,
    TEMPLATE_FLIP,
)
from lrface.data.images import load_rgb
from lrface.detect import Face, FaceDetector, detect_bounded
from lrface.detect.align import align_face, native_chip_size, student_chip
from lrface.models.encoder import FaceEncoder
from lrface.search.decision import Decision, Searcher, decide

MULTI_FACE_POLICIES = ("all", "dominant", "largest", "error")

DOMINANT_RATIO = 0.7
"""Under ``dominant``, the largest face is taken only if every other face is narrower than this
share of its width (a group photo of similar faces is refused rather than guessed at)."""


def routing_cutoff(student: FaceEncoder | None, size_cutoff: float | None = None) -> float:
    """The face width under which faces go to ``student``: ``size_cutoff`` if given, else the
    student's own measured cutoff (a shipped student's ``student.json``), else the default."""
    if size_cutoff is not None:
        return size_cutoff
    return getattr(student, "size_cutoff", None) or DEFAULT_SIZE_CUTOFF


class FaceInputError(ValueError):
    """An input that gives no usable face; ``source`` names the file (or image) and ``reason``
    says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class NoFaceError(FaceInputError):
    """No face was detected."""


class MultipleFacesError(FaceInputError):
    """Several faces were detected under the ``error`` policy."""


@dataclass
class EmbeddedFace:
    """A face, its unit embedding, the encoder that made it (``encoder``: its cache key, which
    calibrations name; ``encoder_name``: what users call it, e.g. ``lrface-lr-v2``), the chip
    side it was given, its native resolution (chip side at one chip px per image px) and the
    faces in its image."""

    face: Face
    embedding: np.ndarray
    encoder: str
    role: str
    chip_size: int
    native_size: int
    faces_in_image: int = 1
    encoder_name: str = ""

    @property
    def resolution(self) -> int | None:
        """Native chip side of a low-resolution face, None for a full-size one (whichever
        encoder served it): what its thresholds are calibrated by."""
        return as_resolution(self.native_size)

    @property
    def ref(self) -> FaceRef:
        return FaceRef(self.encoder, self.resolution)

    def to_dict(self) -> dict:
        return {
            **self.face.to_dict(),
            "encoder": self.encoder,
            "encoder_name": self.encoder_name or self.encoder,
            "role": self.role,
            "chip_size": self.chip_size,
            "resolution": self.native_size,
            "faces_in_image": self.faces_in_image,
        }


@dataclass
class VerifyResult:
    """Cosine ``score`` of the best-matching faces ``a`` and ``b``; ``same`` is None when no
    threshold was given."""

    score: float
    threshold: float | None
    same: bool | None
    a: EmbeddedFace
    b: EmbeddedFace
    threshold_source: str | None = None
    threshold_reason: str | None = None
    comparisons: int = 1

    def to_dict(self) -> dict:
        return {
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "threshold_reason": self.threshold_reason,
            "same": self.same,
            "comparisons": self.comparisons,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
        }


def select_faces(faces: list[Face], policy: str, source: str) -> list[Face]:
    """Apply the several-faces ``policy``; NoFaceError when ``faces`` is empty."""
    if policy not in MULTI_FACE_POLICIES:
        raise ValueError(f"unknown multi-face policy {policy!r}; one of {MULTI_FACE_POLICIES}")
    if not faces:
        raise NoFaceError(source, "no face found")
    ranked = sorted(faces, key=lambda f: f.width, reverse=True)
    if policy == "largest":
        return ranked[:1]
    if policy == "dominant" and len(faces) > 1:
        if ranked[1].width >= DOMINANT_RATIO * ranked[0].width:
            widths = ", ".join(f"{f.width:.0f}" for f in ranked[:5])
            raise MultipleFacesError(
                source,
                f"{len(faces)} faces of similar size ({widths} px wide); crop the photo to one "
                "face, or take the largest with --multi-face largest",
            )
        return ranked[:1]
    if policy == "error" and len(faces) > 1:
        raise MultipleFacesError(
            source, f"{len(faces)} faces found and the multi-face policy is 'error'"
        )
    return list(faces)


class FacePipeline:
    """Detector + teacher (+ optional low-resolution student)."""

    def __init__(
        self,
        detector: FaceDetector,
        teacher: FaceEncoder,
        student: FaceEncoder | str | None = DEFAULT_STUDENT,
        size_cutoff: float | None = None,
        multi_face: str = "all",
    ):
        if isinstance(student, str):  # a name: the shipped student by default
            from lrface.models.factory import create_encoder

            student = create_encoder(student, device=teacher.device)
        if student is not None and student.dim != teacher.dim:
            raise ValueError(
                f"student {student.cache_key} gives {student.dim}-d embeddings, "
                f"teacher {teacher.cache_key} {teacher.dim}-d: they cannot be compared"
            )
        if multi_face not in MULTI_FACE_POLICIES:
            raise ValueError(
                f"unknown multi-face policy {multi_face!r}; one of {MULTI_FACE_POLICIES}"
            )
        self.detector = detector
        self.teacher = teacher
        self.student = student
        self.size_cutoff = routing_cutoff(student, size_cutoff)
        self.multi_face = multi_face

    @property
    def dim(self) -> int:
        return self.teacher.dim

    @staticmethod
    def load(image: np.ndarray | str | os.PathLike) -> tuple[np.ndarray, str]:
        """(RGB array, name for messages); files go through ``load_rgb`` (BadImageError)."""
        if isinstance(image, np.ndarray):
            return image, "image"
        return load_rgb(image), str(image)

    def detect(
        self, image: np.ndarray | str | os.PathLike, policy: str | None = None
    ) -> list[Face]:
        """Faces kept by the multi-face policy (NoFaceError / MultipleFacesError name the file)."""
        array, source = self.load(image)
        return select_faces(detect_bounded(self.detector, array), policy or self.multi_face, source)

    def uses_student(self, face: Face) -> bool:
        return self.student is not None and face.width < self.size_cutoff

    def embed_faces(
        self, image: np.ndarray, faces: list[Face], template: bool = False, search: bool = False
    ) -> list[EmbeddedFace]:
        """Align and embed ``faces`` of ``image``, each by the encoder its size calls for.
        ``template``: the faces are to be enrolled; ``search``: they are probes of a still
        image's watch-list search. The teacher then averages each with its mirror image where
        ``TEMPLATE_FLIP`` / ``SEARCH_PROBE_FLIP`` say so (as the calibrations were set)."""
        mirror = (template and TEMPLATE_FLIP) or (search and SEARCH_PROBE_FLIP)
        out: list[EmbeddedFace | None] = [None] * len(faces)
        for role, encoder in (("teacher", self.teacher), ("student", self.student)):
            rows = [i for i, f in enumerate(faces) if (role == "student") == self.uses_student(f)]
            if not rows or encoder is None:
                continue
            if role == "student":
                chips = [student_chip(image, faces[i], encoder.input_size) for i in rows]
            else:
                chips = [align_face(image, faces[i], CHIP_SIZE) for i in rows]
            # one batch per chip side (embed() needs equal-size chips): a student's chips are
            # all its input size unless a face is larger, so small faces of any size share one
            by_side: dict[int, list[int]] = {}
            for k, chip in enumerate(chips):
                by_side.setdefault(chip.shape[0], []).append(k)
            for ks in by_side.values():
                flip = mirror and role == "teacher"
                embeddings = encoder.embed(np.stack([chips[k] for k in ks]), flip=flip)
                for k, emb in zip(ks, embeddings, strict=True):
                    face = faces[rows[k]]
                    native = native_chip_size(face)
                    out[rows[k]] = EmbeddedFace(
                        face,
                        emb,
                        encoder.cache_key,
                        role,
                        native if role == "student" else CHIP_SIZE,
                        native,
                        encoder_name=encoder.name,
                    )
        return [e for e in out if e is not None]

    def embed_image(
        self,
        image: np.ndarray | str | os.PathLike,
        policy: str | None = None,
        template: bool = False,
        search: bool = False,
    ) -> list[EmbeddedFace]:
        """Load, detect (with the policy) and embed (``template``: for enrolment, ``search``:
        for a watch-list search, ``embed_faces``)."""
        array, source = self.load(image)
        found = detect_bounded(self.detector, array)
        kept = select_faces(found, policy or self.multi_face, source)
        embedded = self.embed_faces(array, kept, template, search)
        for face in embedded:
            face.faces_in_image = len(found)
        return embedded

    def embed_template(
        self, image: np.ndarray | str | os.PathLike, policy: str | None = None
    ) -> list[EmbeddedFace]:
        """``embed_image`` for enrolment: what every enrolment path stores."""
        return self.embed_image(image, policy, template=True)

    def embed_probe(
        self, image: np.ndarray | str | os.PathLike, policy: str | None = None
    ) -> list[EmbeddedFace]:
        """``embed_image`` for a watch-list search of a still image."""
        return self.embed_image(image, policy, search=True)

    def thresholds(self, calibrations: list[Calibration]) -> ThresholdBook:
        """A ThresholdBook over ``calibrations`` that knows this pipeline's encoders by name
        and by cache key; refuses flip-averaged calibrations (faces here are not flipped)."""
        for calib in calibrations:
            calib.check_flip(False)
        encoders = [e for e in (self.teacher, self.student) if e is not None]
        return ThresholdBook(calibrations, {e.cache_key: {e.name} for e in encoders})

    def verify(
        self,
        a: np.ndarray | str | os.PathLike,
        b: np.ndarray | str | os.PathLike,
        threshold: float | None = None,
        calibration: Calibration | list[Calibration] | None = None,
    ) -> VerifyResult:
        """Compare every face kept in ``a`` with every face kept in ``b`` (policy ``all``: all
        of them) and return the best-matching pair. ``same`` = score above ``threshold``, or
        above the calibrated threshold for that pair's encoders and resolutions (an explicit
        threshold wins); with calibrations the best pair is the one furthest above its own
        threshold, else the highest score."""
        faces_a, faces_b = self.embed_image(a), self.embed_image(b)
        sims = np.stack([f.embedding for f in faces_a]) @ np.stack([f.embedding for f in faces_b]).T
        choices = None
        if threshold is None and calibration is not None:
            book = self.thresholds(calibration if isinstance(calibration, list) else [calibration])
            choices = [[book.pair(fa.ref, fb.ref) for fb in faces_b] for fa in faces_a]
            margin = sims - np.array([[c.threshold for c in row] for row in choices])
            i, j = np.unravel_index(int(np.argmax(margin)), sims.shape)
        else:
            i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
        score = float(sims[i, j])
        source = reason = None
        if choices is not None:
            threshold, source, reason = (
                choices[i][j].threshold,
                choices[i][j].source,
                choices[i][j].reason,
            )
        elif threshold is not None:
            source, reason = "--threshold", "given"
        same = None if threshold is None else bool(score > threshold)
        return VerifyResult(
            score, threshold, same, faces_a[i], faces_b[j], source, reason, sims.size
        )


def create_detector(
    name: str = "mtcnn", min_face: float = 20, device: str = "cpu", pyramid: str = "area"
) -> FaceDetector:
    """``mtcnn`` (the default: finds faces from 12 px, or from 6 upscaled) or ``dlib`` (HOG,
    faces of 80 px and up) as a FaceDetector; MTCNN raises ``WeightsUnavailableError`` when its
    weights can be neither found nor fetched. ``pyramid``: MTCNN's (``area``, the reference;
    ``cascade``, what ``lrface watch`` uses: ``lrface.detect.mtcnn``)."""
    if name == "dlib":
        from lrface.detect.dlib_detector import DlibDetector

        return DlibDetector()
    if name != "mtcnn":
        raise ValueError(f"unknown detector {name!r}; choose mtcnn or dlib")
    from lrface.detect.mtcnn import MTCNN

    return MTCNN(min_face=min_face, device=device, pyramid=pyramid)


def load_pipeline(
    teacher: str | FaceEncoder = DEFAULT_TEACHER,
    student: str | FaceEncoder | None = DEFAULT_STUDENT,
    detector: str | FaceDetector = "mtcnn",
    min_face: float = 20,
    size_cutoff: float | None = None,
    multi_face: str = "all",
    device: str = "cpu",
    runtime: str = "torch",
) -> FacePipeline:
    """A ``FacePipeline`` from names (or objects): encoders by ``create_encoder``, run under
    ``runtime`` (``torch`` or ``onnx``: ONNX Runtime, the same embeddings, faster on a few
    faces at a time), the detector by ``create_detector``."""
    from lrface.models.factory import create_encoder
    from lrface.models.onnx_encoder import with_runtime

    if isinstance(student, str):  # a wrong path is the cheapest error: load it first
        student = create_encoder(student, device=device)
    if isinstance(teacher, str):
        teacher = create_encoder(teacher, device=device)
    if isinstance(detector, str):
        detector = create_detector(detector, min_face, device)
    return FacePipeline(
        detector,
        with_runtime(teacher, runtime),
        with_runtime(student, runtime),
        size_cutoff=size_cutoff,
        multi_face=multi_face,
    )


def default_calibrations(
    encoder: str, student: str | None, scoring: str = DEFAULT_SCORING
) -> list[Calibration]:
    """The calibrations stored with the student (if any) and the teacher (if any), raw ones
    and, unless ``scoring`` is ``raw``, those for normalized scores; see
    ``lrface.calibration.calibration_path`` and ``scoring_calibration_path``."""
    normalized = (
        []
        if scoring == "raw"
        else stored_calibrations(
            [student, encoder], lambda name: scoring_calibration_path(name, scoring)
        )
    )
    return stored_calibrations([student, encoder]) + normalized


def search_normalizer(encoder: str, student: str | None, scoring: str = DEFAULT_SCORING):
    """The ``lrface.search.normalize.Normalizer`` gallery searches of this teacher and student
    are scored by: ``scoring`` for each encoder that has both a stored cohort and a
    calibration set on that scoring, raw for the others; None when neither has them."""
    from lrface.search.normalize import stored_normalizer

    names = [n for n in (student, encoder) if n and scoring_calibration_path(n, scoring)]
    return stored_normalizer(scoring, names)


def watch_calibrations(
    encoder: str, student: str | None, scoring: str = DEFAULT_SCORING
) -> list[Calibration]:
    """What video tracks are judged by (``lrface watch``, the service's ``/api/watch``): the
    track calibrations stored with the student and the teacher, then their single-face ones
    (``ThresholdBook.openset(..., tracks=True)`` prefers the former, falls back to the latter),
    raw ones and, unless ``scoring`` is ``raw``, those set on normalized scores."""
    normalized = [] if scoring == "raw" else track_calibrations([student, encoder], scoring)
    return (
        track_calibrations([student, encoder])
        + normalized
        + default_calibrations(encoder, student, scoring)
    )


THUMBNAIL_SIZE = 112


def thumbnail_jpeg(image: np.ndarray, face: Face, size: int = THUMBNAIL_SIZE) -> bytes:
    """The aligned face as a small JPEG, for galleries and the web page."""
    import cv2

    chip = align_face(image, face, size)
    ok, data = cv2.imencode(".jpg", chip[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("could not encode the thumbnail")
    return data.tobytes()


def identify(
    book: ThresholdBook,
    face: EmbeddedFace,
    top: list[tuple[str, float]],
    gallery_encoder: str,
    threshold: float | None = None,
    scoring: str = "raw",
) -> Decision:
    """The open-set decision for ``face`` given its ranked ``top`` (name, score) matches: the
    top identity if its score is at least the open-set threshold for the face's resolution and
    encoder (``threshold`` overrides), else unknown; without a calibrated threshold, a ranking
    that says why. ``scoring``: how the matches were scored (``Gallery.scoring_for``); the
    threshold comes from a calibration set on that scoring."""
    if threshold is not None:
        return decide(top, threshold, "--threshold", "given")
    try:
        choice = book.openset(face.ref, gallery_encoder, scoring=scoring)
    except ValueError as exc:
        return decide(top, None, None, str(exc))
    return decide(top, choice.threshold, choice.source, choice.reason)


@dataclass
class FaceAnswer:
    """One face of a probe image, how its matches were scored (``raw``: cosine) and its
    open-set decision: what a search answers."""

    face: EmbeddedFace
    decision: Decision
    scoring: str = "raw"

    def to_dict(self) -> dict:
        return {**self.face.to_dict(), "scoring": self.scoring, "decision": self.decision.to_dict()}


def answer_faces(
    faces: list[EmbeddedFace],
    search: Searcher,
    k: int,
    book: ThresholdBook,
    gallery_encoder: str,
    threshold: float | None = None,
    scoring_for: Callable[[str], str] | None = None,
) -> list[FaceAnswer]:
    """The search answer, written once (``lrface gallery search``, the service, the Python
    API): each face's top-``k`` identities and its open-set decision. The search is given each
    face's ``FaceRef`` (a normalizing gallery scores by it); ``scoring_for`` (encoder key ->
    scoring, ``Gallery.scoring_for``) says how each face's scores were made, raw by default."""
    if not faces:
        return []
    tops = search(np.stack([f.embedding for f in faces]), k, [f.ref for f in faces])
    answers = []
    for face, top in zip(faces, tops, strict=True):
        scoring = scoring_for(face.encoder) if scoring_for else "raw"
        decision = identify(book, face, top, gallery_encoder, threshold, scoring)
        answers.append(FaceAnswer(face, decision, scoring))
    return answers
