"""The Python API in a few lines: a ``Recognizer`` (detector + teacher + shipped student), a
``Watchlist`` opened with ``open_gallery`` (enrol people, search photos) and ``watch`` (track
events of a video, as they end). Each calls the same library workflows as the command line
and the service (``lrface.enrolment``, ``lrface.pipeline.answer_faces``,
``lrface.video.watcher``), so the answers are the same::

    import lrface
    rec = lrface.Recognizer()
    gallery = lrface.open_gallery("watchlist.db")
    gallery.enroll("Jane Doe", ["jane1.jpg", "jane2.jpg"], recognizer=rec)
    gallery.search("cctv_still.png", recognizer=rec)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

from lrface.constants import DEFAULT_STUDENT, DEFAULT_TEACHER
from lrface.enrolment import (
    EnrolReport,
    Photo,
    enrol_identity,
    local_actor,
    photos_from_files,
    store_identity_stats,
)
from lrface.pipeline import (
    EmbeddedFace,
    FaceAnswer,
    FacePipeline,
    VerifyResult,
    answer_faces,
    default_calibrations,
    load_pipeline,
    search_normalizer,
    watch_calibrations,
)
from lrface.search.decision import gallery_searcher
from lrface.search.duplicates import EnrolledFaces
from lrface.search.names import normalize_name
from lrface.search.store import GalleryStore, gallery_exists
from lrface.search.store import open_gallery as open_store
from lrface.search.sync import LiveGallery
from lrface.video.watcher import TrackEvent

ImageInput = np.ndarray | str | os.PathLike


class Recognizer:
    """Faces in, embeddings and decisions out: MTCNN, the dlib teacher for faces from the
    student's cutoff up (20 px for the shipped ``lrface-lr-v2``), the student below it, and
    the calibrated thresholds stored with them. ``student=None`` uses the teacher alone;
    ``runtime="onnx"`` runs the encoders under ONNX Runtime (same embeddings, faster)."""

    def __init__(
        self,
        teacher: str = DEFAULT_TEACHER,
        student: str | None = DEFAULT_STUDENT,
        detector: str = "mtcnn",
        min_face: float = 20,
        size_cutoff: float | None = None,
        device: str = "cpu",
        runtime: str = "torch",
    ):
        self.teacher_name, self.student_name = teacher, student
        self.pipeline: FacePipeline = load_pipeline(
            teacher, student, detector, min_face, size_cutoff, "all", device, runtime
        )

    @classmethod
    def from_pipeline(
        cls, pipeline: FacePipeline, teacher: str, student: str | None = None
    ) -> Recognizer:
        """A recognizer around a pipeline built otherwise (your own detector or encoders);
        ``teacher`` and ``student`` name the encoders whose stored calibrations apply."""
        recognizer = cls.__new__(cls)
        recognizer.teacher_name, recognizer.student_name = teacher, student
        recognizer.pipeline = pipeline
        return recognizer

    def faces(self, image: ImageInput) -> list[EmbeddedFace]:
        """Every face of ``image`` (a path or an RGB array), detected and embedded by the
        encoder its size calls for; ``NoFaceError`` when there is none."""
        return self.pipeline.embed_image(image)

    def verify(self, a: ImageInput, b: ImageInput, threshold: float | None = None) -> VerifyResult:
        """Are the people in ``a`` and ``b`` the same? The best-matching pair of faces, its
        cosine score, the threshold calibrated for those faces' sizes and encoders (or
        ``threshold``) and the decision (``same``)."""
        calibrations = default_calibrations(self.teacher_name, self.student_name)
        return self.pipeline.verify(a, b, threshold, calibrations if threshold is None else None)


class Watchlist:
    """A gallery of enrolled people (``open_gallery``): ``enroll`` photos, ``search`` a probe
    image. A gallery that does not exist yet is created by its first enrolment, for the
    recognizer's teacher."""

    def __init__(self, target: str | os.PathLike):
        self.target = target  # a file, or a postgresql:// database (kept as text)
        self._store: GalleryStore | None = open_store(target) if gallery_exists(target) else None
        self._live: LiveGallery | None = None  # the searched index, once searched
        self._live_student: str | None = None  # the student whose scoring it uses

    def _opened(self, recognizer: Recognizer) -> GalleryStore:
        pipe = recognizer.pipeline
        if self._store is None:
            name = recognizer.teacher_name
            self._store = open_store(self.target, pipe.teacher.cache_key, pipe.dim, name)
        else:
            self._store.check_compatible(pipe.teacher.cache_key, pipe.dim)
        return self._store

    def enroll(
        self,
        name: str,
        photos: Iterable[str | os.PathLike | bytes],
        recognizer: Recognizer,
        multi_face: str = "dominant",
    ) -> EnrolReport:
        """Add photos of ``name`` (paths, or image bytes), as ``lrface gallery enroll`` does:
        the name is checked and stored in its normal form (``lrface.search.names``; another
        spelling of an enrolled name is refused in the report), each photo's dominant face is
        embedded and committed, photos already enrolled for ``name`` are skipped, photos
        another identity holds are warned of (``report.warnings``), unusable ones listed in
        ``report.skipped`` with the reason; every commit is audited as ``python:<user>``."""
        name = normalize_name(name)
        store = self._opened(recognizer)
        items = list(photos)
        files = [p for p in items if not isinstance(p, bytes)]
        given = [Photo(f"photo {i}", p) for i, p in enumerate(items) if isinstance(p, bytes)]
        report = EnrolReport()
        embed = recognizer.pipeline.embed_template
        photo_list = [*photos_from_files(files), *given]
        actor = local_actor("python")
        enrolled = EnrolledFaces(store)
        enrol_identity(embed, store, name, photo_list, report, actor, enrolled, multi_face)
        store_identity_stats(store, recognizer.student_name, report.identities)
        return report

    def search(
        self, image: ImageInput, recognizer: Recognizer, k: int = 5, threshold: float | None = None
    ) -> list[FaceAnswer]:
        """Who is in ``image``? For each face, its open-set decision: the best identity, or
        unknown when the score is under the threshold calibrated for the face's size and
        encoder (or ``threshold``), with the top-``k`` identities; scored as ``lrface gallery
        search`` scores them (AS-norm where the encoder has a shipped cohort and calibration,
        cosine elsewhere: ``answer.scoring``)."""
        index = self._index(recognizer)
        store, student = index.store, recognizer.student_name
        pipe = recognizer.pipeline
        book = pipe.thresholds(default_calibrations(store.encoder_name, student))
        faces = pipe.embed_probe(image)
        searcher = gallery_searcher(index)
        return answer_faces(faces, searcher, k, book, store.encoder, threshold, index.scoring_for)

    def _index(self, recognizer: Recognizer) -> LiveGallery:
        """The faiss index searches use, scored as ``lrface gallery search`` scores them for
        the recognizer's student: built at the first search, then brought up to date with
        the store's changes before each one (not read again whole every time)."""
        store = self._opened(recognizer)
        student = recognizer.student_name
        if self._live is None or self._live_student != student:
            if self._live is not None:
                self._live.close()
            normalizer = search_normalizer(store.encoder_name, student)
            self._live = LiveGallery(store, listen=False, normalizer=normalizer)
            self._live_student = student
        return self._live

    def names(self) -> list[str]:
        """The enrolled identities."""
        return [] if self._store is None else [i.name for i in self._store.identities()]

    def remove(self, name: str) -> None:
        """Remove ``name`` (any spelling of it) and everything enrolled for it, for good (erased
        from the database files, redacted in the audit log); KeyError if there is no such
        identity."""
        enrolled = None if self._store is None else self._store.resolve(name)
        if enrolled is None:
            raise KeyError(name)
        self._store.remove(enrolled, local_actor("python"))

    def close(self) -> None:
        if self._live is not None:
            self._live.close()
        if self._store is not None:
            self._store.close()

    def __len__(self) -> int:
        return 0 if self._store is None else len(self._store)

    def __enter__(self) -> Watchlist:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_gallery(target: str | os.PathLike) -> Watchlist:
    """The watch-list gallery at ``target`` (an SQLite file, e.g. ``watchlist.db``, or a
    ``postgresql://`` database shared with other processes; created by
    the first enrolment when it does not exist)."""
    return Watchlist(target)


def watch(
    source: str | os.PathLike,
    gallery: Watchlist,
    recognizer: Recognizer | None = None,
    stride: int = 1,
    threshold: float | None = None,
) -> Iterator[TrackEvent]:
    """Track events of ``source`` (a video file, a folder of frames, a camera index or a
    stream URL) as each track ends: one decision per person walking past (``event.decision``:
    identity or unknown under the track thresholds for this gallery's size), like
    ``lrface watch``. The recognizer defaults to ``Recognizer(min_face=12)`` (small faces)."""
    from lrface.video.decide import fixed_threshold, watch_thresholds
    from lrface.video.sources import open_source
    from lrface.video.watcher import FaceWatcher

    recognizer = recognizer or Recognizer(min_face=12)
    store = gallery._opened(recognizer)
    faiss_gallery = store.load_gallery()
    pipe = recognizer.pipeline
    if threshold is not None:
        thresholds = fixed_threshold(threshold)
    else:
        calibrations = watch_calibrations(store.encoder_name, recognizer.student_name)
        thresholds = watch_thresholds(pipe, faiss_gallery, calibrations)[0]
    searcher = gallery_searcher(faiss_gallery)
    watcher = FaceWatcher(pipe.detector, pipe.embed_faces, searcher, thresholds)
    yield from watcher.watch(open_source(source, stride))
