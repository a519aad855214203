"""Enrolment, written once: photos of one person in, their faces' embeddings (with the photo's
hash and a thumbnail) committed to a gallery store. ``lrface gallery enroll``, the service's
``POST /api/identities/{name}/photos`` and ``lrface.Watchlist.enroll`` all call
``enrol_photos``; the command and the Python API, which write to the store directly, do it
through ``enrol_identity`` (the name rules, duplicate warnings and the audit log, as the
service applies them).

A photo already enrolled for the person (same SHA-256 of its bytes) is skipped, so a rerun adds
only what is missing; a photo that cannot be used (unreadable, not an image, no face, several
faces under the policy) is skipped with its reason; the rest are committed every ``batch``
photos, so an interrupted run keeps all but the last few.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrface.data.images import MAX_PIXELS, BadImageError, decode_rgb
from lrface.pipeline import EmbeddedFace, FaceInputError, thumbnail_jpeg
from lrface.search.duplicates import EnrolledFaces
from lrface.search.store import Enrolment, GalleryStore, NameConflict, file_sha256

ENROL_BATCH = 16
"""Photos embedded between two commits: an interrupted enrolment keeps all but these."""

Embed = Callable[[np.ndarray, str], list[EmbeddedFace]]
"""(RGB image, multi-face policy) -> the faces kept, embedded as templates
(``FacePipeline.embed_template``)."""


@dataclass
class Photo:
    """One photo offered for enrolment: ``source`` names it (file path or upload name) and is
    stored with the embedding; ``data`` is its bytes, or None with ``error`` saying why it
    could not be read."""

    source: str
    data: bytes | None
    error: str | None = None


@dataclass
class EnrolReport:
    """What enrolments did, summed over calls: photos ``added`` (committed), ``already``
    enrolled, ``crowded`` (several faces, the dominant or largest one enrolled), ``skipped``
    (source, reason) and the ``identities`` that received photos."""

    added: int = 0
    already: int = 0
    crowded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    identities: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    """Photos enrolled that another identity already holds (``checked_commit``)."""


def checked_commit(
    store: GalleryStore, name: str, report: EnrolReport, actor: str, enrolled: EnrolledFaces
) -> Callable[[list[Enrolment]], int] | None:
    """A ``commit`` for ``enrol_photos`` into ``store`` under the name rules
    (``lrface.search.names``): None, with ``name`` skipped in ``report``, when it is another
    spelling of an enrolled identity; otherwise each batch is checked for photos another
    identity already holds (``report.warnings``; ``enrolled``: the store's faces, loaded once
    by the caller and kept in step here), stored, and audited as ``actor``'s."""
    existing = store.resolve(name)
    if existing is not None and existing != name:
        report.skipped.append((name, str(NameConflict(name, existing))))
        return None

    def commit(batch: list[Enrolment]) -> int:
        for e in batch:
            report.warnings += enrolled.warnings(name, e.source, e.sha256, e.embedding)
        try:
            added = store.add(name, batch)[0]
        except NameConflict as exc:  # another process enrolled a spelling in between
            report.skipped.append((name, str(exc)))
            return 0
        enrolled.add(name, np.stack([e.embedding for e in batch]))
        store.audit(actor, "enroll", name, {"photos": len(batch)}, {"added": added})
        return added

    return commit


def local_actor(kind: str) -> str:
    """Who enrols on this machine, as the gallery's audit log names them: ``<kind>:<user>``
    (``cli``: the command line, ``python``: the Python API)."""
    import getpass
    import os

    try:
        return f"{kind}:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (containers)
        return f"{kind}:{os.getuid()}"


def enrol_identity(
    embed: Embed,
    store: GalleryStore,
    name: str,
    photos: Iterable[Photo],
    report: EnrolReport,
    actor: str,
    enrolled: EnrolledFaces,
    policy: str = "dominant",
    on_photo: Callable[[], None] | None = None,
) -> None:
    """``enrol_photos`` for one identity, committed to ``store`` through ``checked_commit``:
    another spelling of an enrolled name is skipped, photos another identity holds are warned
    of, each commit is audited as ``actor``'s; photos already enrolled for ``name`` are
    skipped. ``name`` must already pass ``lrface.search.names.normalize_name``."""
    commit = checked_commit(store, name, report, actor, enrolled)
    if commit is None:
        return
    known = store.enrolled_hashes(name)
    options = {"batch": ENROL_BATCH, "report": report, "on_photo": on_photo}
    enrol_photos(embed, name, photos, known, commit, policy, **options)


def photos_from_files(files: Iterable[Path]) -> Iterator[Photo]:
    """Each file as a ``Photo``, read when it is reached (a file that cannot be read carries
    its reason)."""
    for path in files:
        try:
            yield Photo(str(path), Path(path).read_bytes())
        except OSError as exc:
            yield Photo(str(path), None, f"cannot read ({exc.strerror})")


def enrol_photos(
    embed: Embed,
    name: str,
    photos: Iterable[Photo],
    known: set[str],
    commit: Callable[[list[Enrolment]], int],
    policy: str = "dominant",
    batch: int | None = ENROL_BATCH,
    max_pixels: int = MAX_PIXELS,
    report: EnrolReport | None = None,
    on_photo: Callable[[], None] | None = None,
) -> EnrolReport:
    """Enrol ``photos`` of ``name``: ``known`` holds the SHA-256 of the photos already
    enrolled for it (updated here), ``commit`` stores a list of enrolments and returns how
    many it added; ``batch`` None commits once at the end. ``report`` (a new one by default)
    is updated as photos are committed, so it is right even if the caller is interrupted;
    ``on_photo`` is called once per photo (progress)."""
    report = report if report is not None else EnrolReport()
    pending: list[Enrolment] = []

    def flush() -> None:
        report.added += commit(pending)
        report.identities.add(name)
        pending.clear()

    for photo in photos:
        if on_photo is not None:
            on_photo()
        if photo.data is None:
            report.skipped.append((photo.source, photo.error or "cannot read"))
            continue
        sha = file_sha256(photo.data)
        if sha in known:
            report.already += 1
            continue
        try:
            image = decode_rgb(photo.data, photo.source, max_pixels)
            face = embed(image, policy)[0]
        except (BadImageError, FaceInputError) as exc:
            report.skipped.append((photo.source, exc.reason))
            continue
        known.add(sha)
        report.crowded += face.faces_in_image > 1
        pending.append(
            Enrolment(face.embedding, photo.source, sha, thumbnail_jpeg(image, face.face))
        )
        if batch is not None and len(pending) >= batch:
            flush()
    if pending:
        flush()
    return report


def store_identity_stats(store, student: str | None, names: Iterable[str]) -> None:
    """Store the gallery-side score-normalization statistics of ``names`` (once per change,
    not per photo) where the gallery's encoders have a stored cohort and calibration."""
    from lrface.pipeline import search_normalizer

    normalizer = search_normalizer(store.encoder_name, student)
    if normalizer is not None and names:
        store.update_identity_stats(normalizer, sorted(names))
