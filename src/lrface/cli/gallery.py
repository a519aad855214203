"""``lrface gallery``: the 1:N watch-list in a gallery database (``enroll``, ``search``,
``remove``, ``list``, ``migrate``). The workflows are the library's: ``lrface.enrolment``,
``lrface.search.open_gallery`` and ``lrface.pipeline.answer_faces``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lrface.cli.common import (
    INTERRUPTED,
    CutoffOpt,
    DetectorOpt,
    DeviceOpt,
    GalleryOpt,
    JsonOpt,
    MinFaceOpt,
    MultiOpt,
    StudentOpt,
    build_pipeline,
    check_choice,
    check_writable,
    chosen_student,
    echo_skipped,
    face_line,
    fail,
    open_gallery,
    reported,
)
from lrface.constants import DEFAULT_STUDENT, DEFAULT_TEACHER

gallery_app = typer.Typer(
    help="1:N gallery: enroll, search, remove, list, migrate.", no_args_is_help=True
)


@gallery_app.command("enroll")
def enroll(
    directory: Annotated[Path, typer.Argument(help="<identity>/<images> folders.")],
    gallery: GalleryOpt,
    encoder: Annotated[str, typer.Option(help="Encoder (new gallery).")] = DEFAULT_TEACHER,
    detector: DetectorOpt = "mtcnn",
    min_face: MinFaceOpt = 20,
    multi_face: Annotated[
        str,
        typer.Option(
            help="Several faces in a photo: dominant (the largest when clearly largest, else "
            "skip the photo), largest (whatever the others), or error (skip the photo)."
        ),
    ] = "dominant",
    device: DeviceOpt = "cpu",
) -> None:
    """Enroll every <identity>/ folder of DIRECTORY (one or more photos each) into GALLERY.

    An identity's template is the normalized mean of its photos' embeddings; enrolling a name
    already in the gallery adds the photos to it, and photos already enrolled for it (same
    content) are skipped, so an interrupted run can be rerun. Work is committed every
    few photos; unusable files are skipped and reported.
    """
    from tqdm import tqdm

    from lrface import enrolment
    from lrface.enrolment import EnrolReport
    from lrface.search.duplicates import EnrolledFaces

    check_choice(multi_face, ("dominant", "largest", "error"), "--multi-face")
    if not directory.is_dir():
        raise fail(f"{directory}: not a directory")
    check_writable(gallery)
    pipe = build_pipeline(encoder, None, detector, min_face, 0, multi_face, device)
    store = open_gallery(gallery, pipe.teacher.cache_key, pipe.dim, encoder)
    folders, refused = identity_folders(directory)
    report = EnrolReport(skipped=refused)
    total = sum(len(files) for _, files in folders)
    progress = tqdm(total=total, unit="photo", desc="enroll", file=sys.stderr)
    with store, progress:
        enrolled = EnrolledFaces(store)  # loaded once: every folder's photos are checked
        try:
            for name, files in folders:
                args = (multi_face, report, progress.update, enrolled)
                enrol_folder(pipe, store, name, files, *args)
                if name not in report.identities and not store.enrolled_hashes(name):
                    why = "identity not enrolled: no usable photo"
                    report.skipped.append((str(directory / name), why))
        except KeyboardInterrupt:
            progress.close()
            typer.echo(
                f"interrupted: {report.added} photos committed to {store.path}; run the same "
                "command again to add the rest",
                err=True,
            )
            raise typer.Exit(INTERRUPTED) from None
        enrolment.store_identity_stats(store, DEFAULT_STUDENT, report.identities)
        size = len(store)
    echo_enrolment(report, store.path, size, multi_face)


def enrol_folder(pipe, store, name, files: list[Path], policy: str, report, on_photo, enrolled):
    """``lrface.enrolment.enrol_identity`` for one identity folder (another spelling of an
    enrolled name is skipped; photos already enrolled under another name are warned of; each
    commit is audited as ``cli:<user>``)."""
    from lrface import enrolment

    photos = enrolment.photos_from_files(files)
    actor = enrolment.local_actor("cli")
    enrolment.enrol_identity(
        pipe.embed_template, store, name, photos, report, actor, enrolled, policy, on_photo
    )


def identity_folders(
    directory: Path,
) -> tuple[list[tuple[str, list[Path]]], list[tuple[str, str]]]:
    """(name, its photo files) for every ``<identity>/`` folder of ``directory`` whose name
    passes ``lrface.search.names`` (the service's rules; stored in NFKC form), and (path,
    reason) for the rest: other folders and files outside any folder (hidden ones ignored)."""
    from lrface.search.names import InvalidName, normalize_name

    folders, refused = [], []
    for entry in (e for e in sorted(directory.iterdir()) if not e.name.startswith(".")):
        if not entry.is_dir():
            refused.append((str(entry), "not inside an <identity>/ folder"))
            continue
        try:
            name = normalize_name(entry.name)
        except InvalidName as exc:
            refused.append((str(entry), str(exc)))
            continue
        folders.append((name, sorted(p for p in entry.iterdir() if not p.name.startswith("."))))
    return folders, refused


def echo_enrolment(report, gallery: str, size: int, multi_face: str) -> None:
    """The enrolment summary on stdout, the skipped photos on stderr."""
    already = f"; {report.already} photos were already enrolled" if report.already else ""
    typer.echo(
        f"enrolled {report.added} photos of {len(report.identities)} identities into {gallery} "
        f"({size} identities in total){already}"
    )
    if report.crowded:
        kept = "largest" if multi_face == "largest" else "clearly largest"
        held = f"{report.crowded} of those photos held several faces"
        typer.echo(f"{held}; the {kept} one was enrolled")
    if report.warnings:
        count = len(report.warnings)
        typer.echo(f"warning: {count} photos are already enrolled under another name:", err=True)
        for line in report.warnings:
            typer.echo(f"  {line}", err=True)
    echo_skipped(report.skipped)


@gallery_app.command("search")
def search(
    image: Annotated[Path, typer.Argument(help="Probe image.")],
    gallery: GalleryOpt,
    k: Annotated[int, typer.Option("-k", "--top-k", help="Identities to list.", min=1)] = 5,
    student: StudentOpt = DEFAULT_STUDENT,
    detector: DetectorOpt = "mtcnn",
    min_face: MinFaceOpt = 20,
    size_cutoff: CutoffOpt = None,
    multi_face: MultiOpt = "all",
    threshold: Annotated[
        float | None,
        typer.Option(help="Open-set threshold: unknown when the best score is under it."),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(help="Calibration JSON with open-set thresholds (--threshold wins)."),
    ] = None,
    scoring: Annotated[
        str,
        typer.Option(
            help="Scores: asnorm (normalized against the shipped cohort, where the encoder has "
            "one and a calibration for it: docs/openset.md) or raw (cosine)."
        ),
    ] = "asnorm",
    as_json: JsonOpt = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Who is in IMAGE? For each face: the best identity, or **unknown** when its score is under
    the open-set threshold calibrated for the face's resolution and the encoder that served it
    (set at a stated false-positive identification rate on LFW people outside the gallery:
    docs/openset.md); then the top-k identities with cosine scores."""
    from lrface.data.images import BadImageError
    from lrface.pipeline import (
        Calibration,
        FaceInputError,
        answer_faces,
        default_calibrations,
        search_normalizer,
    )
    from lrface.search.decision import gallery_searcher
    from lrface.search.gallery import GalleryError

    student = chosen_student(student)
    check_choice(scoring, ("raw", "asnorm"), "--scoring")
    with open_gallery(gallery) as store:
        if not len(store):
            hint = f"lrface gallery enroll DIR --gallery {store.path}"
            raise fail(f"{store.path}: the gallery is empty; enroll identities first ({hint})")
        gal = store.load_gallery(search_normalizer(store.encoder_name, student, scoring))
    with reported(ValueError):
        calibs = [Calibration.load(calibration)] if calibration else []
        calibs += default_calibrations(gal.encoder_name, student, scoring)
    options = (detector, min_face, size_cutoff, multi_face, device)
    pipe = build_pipeline(gal.encoder_name, student, *options)
    with reported(BadImageError, FaceInputError, GalleryError, ValueError):
        gal.check_compatible(pipe.teacher.cache_key, pipe.dim, store.path)
        faces = pipe.embed_probe(image)
        book = pipe.thresholds(calibs)
    search = gallery_searcher(gal)
    answers = answer_faces(faces, search, k, book, gal.encoder, threshold, gal.scoring_for)
    if as_json:
        typer.echo(json.dumps([a.to_dict() for a in answers], indent=2))
        return
    for answer in answers:
        typer.echo(f"{face_line(answer.face)}:")
        typer.echo(f"  answer: {answer.decision.describe()}")
        for rank, (name, score) in enumerate(answer.decision.top, 1):
            typer.echo(f"  {rank}. {name}  {score:.4f}")


@gallery_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Identity to remove.")], gallery: GalleryOpt
) -> None:
    """Remove an identity and everything enrolled for it (embeddings, thumbnails, sources),
    for good: erased from the database files, and redacted in the audit log."""
    from lrface.enrolment import local_actor

    with open_gallery(gallery) as store:
        name = store.resolve(name) or name  # the enrolled spelling
        try:
            store.remove(name, local_actor("cli"))
        except KeyError:
            raise fail(f"{store.path}: no identity named {name!r}") from None
        left = len(store)
    typer.echo(f"removed {name!r}; {left} identities left in {store.path}")


@gallery_app.command("list")
def list_identities(gallery: GalleryOpt) -> None:
    """The gallery's encoder and identities with their photo counts."""
    with open_gallery(gallery) as store:
        people = store.identities()
        shown = f"{store.path}: {len(people)} identities"
        typer.echo(f"{shown}, encoder {store.encoder} ({store.dim}-d)")
    for person in people:
        typer.echo(f"  {person.name}\t{person.photos} photo(s)")


@gallery_app.command("migrate")
def migrate(
    old: Annotated[
        str,
        typer.Argument(
            help="Gallery to copy: SQLite file, postgresql:// URL, or the older .safetensors."
        ),
    ],
    new: Annotated[
        str,
        typer.Argument(help="New gallery: a file that must not exist, or an empty database."),
    ],
) -> None:
    """Copy a gallery into a new one: SQLite to PostgreSQL and back (every photo's embedding,
    source, hash, thumbnail and time, and the event log), or the older single-file format into
    either. The old gallery is left as it is."""
    from lrface.search.gallery import GalleryError
    from lrface.search.store import migrate, redacted

    with reported(GalleryError):
        identities, photos = migrate(old, new)
    source, target = redacted(old), redacted(new)
    typer.echo(f"migrated {identities} identities ({photos} photos) from {source} into {target}")
