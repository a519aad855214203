"""From photos to answers: detect, align, embed (teacher or low-resolution student), verify.

``FacePipeline(detector, teacher, student=None, size_cutoff=20)``: a face whose detected box is
narrower than ``size_cutoff`` px is embedded by the student, every other face by the teacher from
a 150 px chip. The student's chip is warped in one interpolation straight to the student's input
size (never first to the face's native resolution and then resampled again: that double
interpolation cost 4.6 points of rank-1 at 16 px on View 1 dev probes); its resolution, for the
calibrated thresholds, is still the native one (``lrface.detect.align.native_chip_size``).
Students are trained into the teacher's embedding space, so either kind of embedding compares
with either (and with a gallery enrolled by the teacher).

Several faces in one image: ``multi_face`` = ``largest`` (default), ``all`` or ``error``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrface.data.degrade import CHIP_SIZE
from lrface.data.images import load_rgb
from lrface.detect import Face, FaceDetector
from lrface.detect.align import align_face, native_chip_size, student_chip
from lrface.models.encoder import FaceEncoder

MULTI_FACE_POLICIES = ("largest", "all", "error")

# Faces narrower than this go to the student. On LFW View 2 the per-fold students beat the
# teacher up to 20 px chips and lose from 24 px up (docs/results.md, sections 2a and 3), and in 1:N
# search they lose at 24 px (section 7), so bigger faces are better left to the teacher.
DEFAULT_SIZE_CUTOFF = 20.0


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
    """A face, its unit embedding, the encoder that made it and the chip side it was given."""

    face: Face
    embedding: np.ndarray
    encoder: str
    role: str
    chip_size: int

    @property
    def resolution(self) -> int | None:
        """Chip side for a student-served (low-resolution) face, None for a teacher one."""
        return self.chip_size if self.role == "student" else None

    def to_dict(self) -> dict:
        return {
            **self.face.to_dict(),
            "encoder": self.encoder,
            "role": self.role,
            "chip_size": self.chip_size,
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

    def to_dict(self) -> dict:
        return {
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "same": self.same,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
        }


def select_faces(faces: list[Face], policy: str, source: str) -> list[Face]:
    """Apply the several-faces ``policy``; NoFaceError when ``faces`` is empty."""
    if policy not in MULTI_FACE_POLICIES:
        raise ValueError(f"unknown multi-face policy {policy!r}; one of {MULTI_FACE_POLICIES}")
    if not faces:
        raise NoFaceError(source, "no face found")
    if policy == "largest":
        return [max(faces, key=lambda f: f.area)]
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
        student: FaceEncoder | None = None,
        size_cutoff: float = DEFAULT_SIZE_CUTOFF,
        multi_face: str = "largest",
    ):
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
        self.size_cutoff = size_cutoff
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
        return select_faces(self.detector.detect(array), policy or self.multi_face, source)

    def uses_student(self, face: Face) -> bool:
        return self.student is not None and face.width < self.size_cutoff

    def embed_faces(self, image: np.ndarray, faces: list[Face]) -> list[EmbeddedFace]:
        """Align and embed ``faces`` of ``image``, each by the encoder its size calls for."""
        out: list[EmbeddedFace | None] = [None] * len(faces)
        for role, encoder in (("teacher", self.teacher), ("student", self.student)):
            rows = [i for i, f in enumerate(faces) if (role == "student") == self.uses_student(f)]
            if not rows or encoder is None:
                continue
            if role == "student":
                # one batch per chip size: embed() needs equal-size chips
                by_size: dict[int, list[int]] = {}
                for i in rows:
                    by_size.setdefault(native_chip_size(faces[i]), []).append(i)
                groups = list(by_size.items())
            else:
                groups = [(CHIP_SIZE, rows)]
            for size, idx in groups:  # ``size`` stays the face's resolution
                if role == "student":
                    chips = np.stack(
                        [student_chip(image, faces[i], encoder.input_size) for i in idx]
                    )
                else:
                    chips = np.stack([align_face(image, faces[i], size) for i in idx])
                for i, emb in zip(idx, encoder.embed(chips), strict=True):
                    out[i] = EmbeddedFace(faces[i], emb, encoder.cache_key, role, size)
        return [e for e in out if e is not None]

    def embed_image(
        self, image: np.ndarray | str | os.PathLike, policy: str | None = None
    ) -> list[EmbeddedFace]:
        """Load, detect (with the policy) and embed."""
        array, source = self.load(image)
        faces = select_faces(self.detector.detect(array), policy or self.multi_face, source)
        return self.embed_faces(array, faces)

    def verify(
        self,
        a: np.ndarray | str | os.PathLike,
        b: np.ndarray | str | os.PathLike,
        threshold: float | None = None,
        calibration: Calibration | None = None,
    ) -> VerifyResult:
        """Cosine similarity of the faces in ``a`` and ``b`` (best pair under policy ``all``);
        ``same`` = score above ``threshold`` (or the calibration's threshold for the faces'
        resolutions; an explicit threshold wins)."""
        faces_a, faces_b = self.embed_image(a), self.embed_image(b)
        sims = np.stack([f.embedding for f in faces_a]) @ np.stack([f.embedding for f in faces_b]).T
        i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
        best_a, best_b = faces_a[i], faces_b[j]
        source = "--threshold" if threshold is not None else None
        if threshold is None and calibration is not None:
            served = [e for e in (self.teacher, self.student) if e is not None]
            keys = {best_a.encoder, best_b.encoder}
            calibration.check_encoders(
                {n for e in served if e.cache_key in keys for n in (e.name, e.cache_key)}
            )
            threshold, key = calibration.pick(best_a.resolution, best_b.resolution)
            source = f"{calibration.path} [{key}]"
        score = float(sims[i, j])
        same = None if threshold is None else bool(score > threshold)
        return VerifyResult(score, threshold, same, best_a, best_b, source)


TEACHER_CALIBRATION = Path(__file__).parent / "models" / "calibration" / "dlib-resnet-torch.json"
"""Thresholds of the teacher from ``lrface benchmark --no-flip`` on full LFW View 2."""


def default_calibration(encoder: str, student: str | None) -> Path | None:
    """The calibration stored with the model: ``<student checkpoint>/calibration.json`` (written
    by ``lrface benchmark --encoder <checkpoint>``), else the teacher's packaged one."""
    if student is not None:
        stored = Path(student) / "calibration.json"
        return stored if stored.is_file() else None
    return TEACHER_CALIBRATION if encoder == "dlib-resnet-torch" else None


@dataclass
class Calibration:
    """Decision thresholds for cosine scores, from a JSON file.

    Two layouts are read: ``{"threshold": t, "encoder": name, ...}`` (one threshold), and the
    benchmark's ``{"gallery_encoder", "probe_encoder", "thresholds": {"hr-hr@full": t,
    "hr-lr@16": t, "lr-lr@16": t, ...}}`` (by protocol and probe size).
    """

    path: str
    encoders: set[str]
    threshold: float | None
    thresholds: dict[str, float]

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ValueError(f"{path}: cannot read calibration file ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: calibration file is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: calibration file must hold a JSON object")
        encoders = {
            str(data[k]) for k in ("encoder", "gallery_encoder", "probe_encoder") if k in data
        }
        single = data.get("threshold")
        table = data.get("thresholds", {})
        if single is None and not table:
            raise ValueError(f"{path}: calibration file has neither 'threshold' nor 'thresholds'")
        try:
            single = None if single is None else float(single)
            table = {str(k): float(v) for k, v in dict(table).items()}
        except (TypeError, ValueError):
            raise ValueError(f"{path}: calibration thresholds must be numbers") from None
        if not encoders:
            raise ValueError(f"{path}: calibration file does not say which encoder it is for")
        return cls(str(path), encoders, single, table)

    def check_encoders(self, used: set[str]) -> None:
        """ValueError unless the calibration was made for one of the encoders in ``used``."""
        if not self.encoders & used:
            raise ValueError(
                f"{self.path}: calibration was made for {sorted(self.encoders)}, but the faces "
                f"were embedded by {sorted(used)}"
            )

    def pick(self, size_a: int | None, size_b: int | None) -> tuple[float, str]:
        """Threshold for faces of these resolutions (None = full); (threshold, key used)."""
        if self.threshold is not None:
            return self.threshold, "threshold"
        sizes = [s for s in (size_a, size_b) if s is not None]
        protocol = {0: "hr-hr", 1: "hr-lr", 2: "lr-lr"}[len(sizes)]
        options: dict[int | None, str] = {}
        for key in self.thresholds:
            name, _, label = key.partition("@")
            if name == protocol:
                options[None if label == "full" else int(label)] = key
        if not options:
            raise ValueError(f"{self.path}: no '{protocol}' threshold in the calibration")
        if not sizes:
            key = options.get(None) or next(iter(options.values()))
        else:
            target = min(sizes)
            numeric = [s for s in options if s is not None]
            key = options[min(numeric, key=lambda s: abs(s - target))] if numeric else options[None]
        return self.thresholds[key], key
