"""Typer commands for photos in, answers out: ``fetch-weights``, ``detect``, ``verify`` and the
``gallery`` sub-app (``enroll``, ``search``, ``remove``, ``list``, ``migrate``).
``lrface.cli`` registers them.

Every failure the user can fix (unreadable image, no face, wrong gallery, missing weights)
prints one line naming the file and exits with status 1 (2 for missing MTCNN weights).
numpy, torch and the detectors are imported inside the commands, so ``lrface --help`` starts
fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from lrface.calibration import DEFAULT_SCORING
from lrface.models.pretrained import DEFAULT_STUDENT

DEFAULT_TEACHER = "dlib-resnet-torch"
SIZE_CUTOFF_HELP = 16  # lrface.pipeline.DEFAULT_SIZE_CUTOFF, not imported here (numpy); tested

DetectorOpt = Annotated[str, typer.Option(help="Face detector: mtcnn or dlib.")]
MinFaceOpt = Annotated[
    float, typer.Option(help="MTCNN: smallest face searched for, px (>= 12).", min=12)
]
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda.")]
RuntimeOpt = Annotated[
    str,
    typer.Option(
        help="Run the face encoders on the CPU with onnx (ONNX Runtime: same embeddings, about "
        "2x faster on a few faces at a time) or torch (PyTorch).",
    ),
]
StudentOpt = Annotated[
    str,
    typer.Option(
        help="Student for faces narrower than --size-cutoff: the shipped lrface-lr-v2 by "
        "default, another name or a checkpoint dir, or 'none' for the teacher alone."
    ),
]
CutoffOpt = Annotated[
    float | None,
    typer.Option(
        help="Faces narrower than this (px) go to the student (default: the student's own "
        f"measured cutoff, else {SIZE_CUTOFF_HELP} px, lrface.pipeline.DEFAULT_SIZE_CUTOFF)."
    ),
]
MultiOpt = Annotated[
    str,
    typer.Option(
        help="Several faces in an image: all (compare or search each), dominant (the largest "
        "if clearly largest, else refuse), largest, or error."
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def make_detector(name: str, min_face: float = 20, device: str = "cpu"):
    """``mtcnn`` or ``dlib`` as a FaceDetector; exits with a message when it cannot be built."""
    if name == "dlib":
        from lrface.detect.dlib_detector import DlibDetector

        return DlibDetector()
    if name != "mtcnn":
        raise _fail(f"unknown detector {name!r}; choose mtcnn or dlib")
    from lrface.detect.mtcnn import MTCNN
    from lrface.detect.weights import WeightsUnavailableError

    try:
        return MTCNN(min_face=min_face, device=device)
    except WeightsUnavailableError as exc:
        raise _fail(str(exc), 2) from None


def _encoder(name: str, device: str):
    from lrface.models.registry import create_encoder

    try:
        return create_encoder(name, device=device)
    except (KeyError, RuntimeError, FileNotFoundError, ValueError) as exc:
        message = str(exc.args[0] if exc.args else exc)
        raise _fail(message if message.startswith(name) else f"{name}: {message}") from None


def _check_policy(policy: str, allowed: tuple[str, ...]) -> None:
    if policy not in allowed:
        raise _fail(f"--multi-face must be one of {', '.join(allowed)}, got {policy!r}")


def fetch_weights_command(
    force: Annotated[bool, typer.Option(help="Fetch again even when cached.")] = False,
    wheel: Annotated[
        Path | None, typer.Option(help="Use this facenet-pytorch 2.6.0 wheel instead of pip.")
    ] = None,
) -> None:
    """Fetch the MTCNN weights (facenet-pytorch 2.6.0 wheel from PyPI) into the cache."""
    from lrface.detect.weights import WeightsUnavailableError, fetch_mtcnn_weights

    try:
        typer.echo(f"MTCNN weights in {fetch_mtcnn_weights(force=force, wheel=wheel)}")
    except WeightsUnavailableError as exc:
        raise _fail(str(exc), 2) from None


def detect_command(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    detector: DetectorOpt = "mtcnn",
    min_face: MinFaceOpt = 20,
    annotate: Annotated[
        Path | None,
        typer.Option(
            help="Write the image with boxes and landmarks drawn here; with several images, "
            "<stem>_<image stem>.png beside it."
        ),
    ] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Detect faces: JSON with boxes, scores and five landmarks per face, per image."""
    from lrface.data.images import BadImageError, load_rgb
    from lrface.detect import detect_bounded

    det = make_detector(detector, min_face, device)
    results, failed = [], 0
    for path in images:
        try:
            image = load_rgb(path)
        except BadImageError as exc:
            results.append({"image": str(path), "error": exc.reason})
            failed += 1
            continue
        faces = detect_bounded(det, image)
        results.append(
            {
                "image": str(path),
                "detector": det.name,
                "count": len(faces),
                "faces": [f.to_dict() for f in faces],
            }
        )
        if annotate is not None:
            out = annotate
            if len(images) > 1:
                out = annotate.with_name(f"{annotate.stem}_{path.stem}.png")
            _draw(image, faces, out)
    typer.echo(json.dumps(results, indent=2))
    if failed:
        raise _fail(f"{failed} of {len(images)} images could not be read (see 'error' above)")


def _draw(image, faces, out: Path) -> None:
    import cv2
    import numpy as np

    canvas = np.ascontiguousarray(image[:, :, ::-1])
    thick = max(1, round(max(image.shape[:2]) / 300))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), (0, 255, 0), thick)
        for x, y in face.landmarks:
            cv2.circle(canvas, (int(x), int(y)), thick + 1, (0, 0, 255), -1)
        cv2.putText(
            canvas,
            f"{face.score:.2f}",
            (x1, max(y1 - 3, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35 * thick,
            (0, 255, 0),
            thick,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), canvas):
        raise _fail(f"{out}: could not write the annotated image")


def chosen_student(student: str | None) -> str | None:
    """The ``--student`` value as an encoder name, ``None`` for 'none'."""
    return None if student is None or student.lower() == "none" else student


def chosen_runtime(runtime: str) -> str:
    """The ``--runtime`` value, or a one-line exit naming the choices."""
    from lrface.models.onnx_encoder import RUNTIMES

    if runtime not in RUNTIMES:
        raise _fail(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return runtime


def _pipeline(
    encoder: str,
    student: str | None,
    detector: str,
    min_face: float,
    size_cutoff: float | None,
    multi_face: str,
    device: str,
    runtime: str = "torch",
):
    from lrface.models.onnx_encoder import with_runtime
    from lrface.pipeline import FacePipeline

    low = _encoder(student, device) if student else None  # a wrong path fails first
    return FacePipeline(
        make_detector(detector, min_face, device),
        with_runtime(_encoder(encoder, device), runtime),
        with_runtime(low, runtime),
        size_cutoff=size_cutoff,
        multi_face=multi_face,
    )


def verify_command(
    a: Annotated[Path, typer.Argument(help="First image.")],
    b: Annotated[Path, typer.Argument(help="Second image.")],
    encoder: Annotated[
        str, typer.Option(help="Teacher encoder (registered name).")
    ] = DEFAULT_TEACHER,
    student: StudentOpt = DEFAULT_STUDENT,
    threshold: Annotated[
        float | None, typer.Option(help="Cosine threshold: same when the score is above it.")
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            help="Calibration JSON, used before the ones stored with the encoders (--threshold "
            "wins)."
        ),
    ] = None,
    detector: DetectorOpt = "mtcnn",
    min_face: MinFaceOpt = 20,
    size_cutoff: CutoffOpt = None,
    multi_face: MultiOpt = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Are A and B the same person? Prints the score, the decision and the encoder per face."""
    student = chosen_student(student)
    from lrface.pipeline import MULTI_FACE_POLICIES, Calibration, default_calibrations

    _check_policy(multi_face, MULTI_FACE_POLICIES)
    calibs = None
    if threshold is None:
        try:
            calibs = [Calibration.load(calibration)] if calibration else []
            calibs += default_calibrations(encoder, student)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    pipe = _pipeline(encoder, student, detector, min_face, size_cutoff, multi_face, device)
    try:
        result = pipe.verify(a, b, threshold=threshold, calibration=calibs or None)
    except ValueError as exc:  # unreadable image, no face, calibration mismatch
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(f"score: {result.score:.4f}")
    if result.same is None:
        typer.echo("decision: none (give --threshold or --calibration)")
    else:
        verdict = "same person" if result.same else "different people"
        typer.echo(
            f"decision: {verdict} (threshold {result.threshold:.4f} from "
            f"{result.threshold_source}: {result.threshold_reason})"
        )
    if result.comparisons > 1:
        typer.echo(f"best of {result.comparisons} face pairs compared:")
    for label, path, face in (("A", a, result.a), ("B", b, result.b)):
        typer.echo(f"{label} {path}: {_face_line(face)}")


def _face_line(face) -> str:
    """Which face (of how many), its size, and what served it, for the text outputs."""
    found = face.faces_in_image
    where = "" if found == 1 else f" at {[round(float(v)) for v in face.face.box]}"
    size = "full size" if face.resolution is None else f"{face.resolution} px resolution"
    return (
        f"{found} face{'s' if found != 1 else ''} found; face{where} {face.face.width:.0f} px "
        f"wide ({size}) -> {face.role} {face.encoder_name or face.encoder} "
        f"({face.chip_size} px chip)"
    )


gallery_app = typer.Typer(
    help="1:N gallery: enroll, search, remove, list, migrate.", no_args_is_help=True
)
GalleryOpt = Annotated[
    Path, typer.Option(help="Gallery database (SQLite, e.g. watchlist.db; enroll creates it).")
]
ENROLL_BATCH = 16
"""Photos embedded between two commits of an enroll: an interrupted run keeps all but these."""


def _open_store(path: Path):
    from lrface.search.gallery import GalleryError
    from lrface.search.store import open_store

    try:
        return open_store(path)
    except GalleryError as exc:
        raise _fail(str(exc)) from None


def _load_gallery(path: Path):
    """The searchable (faiss) gallery of the store at ``path``; one-line exit when unusable."""
    with _open_store(path) as store:
        return store.load_gallery()


@gallery_app.command("enroll")
def enroll_command(
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

    from lrface.data.images import BadImageError, load_rgb
    from lrface.pipeline import FaceInputError, search_normalizer, thumbnail_jpeg
    from lrface.search.gallery import GalleryError
    from lrface.search.store import Enrolment, SqliteStore, file_sha256

    _check_policy(multi_face, ("dominant", "largest", "error"))
    if not directory.is_dir():
        raise _fail(f"{directory}: not a directory")
    _check_writable(gallery)
    pipe = _pipeline(encoder, None, detector, min_face, 0, multi_face, device)
    try:
        if gallery.exists():
            store = _open_store(gallery)
            store.check_compatible(pipe.teacher.cache_key, pipe.dim)
        else:
            store = SqliteStore.create(gallery, pipe.teacher.cache_key, pipe.dim, encoder)
    except GalleryError as exc:
        raise _fail(str(exc)) from None

    skipped: list[tuple[str, str]] = []
    folders: list[tuple[str, list[Path]]] = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            skipped.append((str(entry), "not inside an <identity>/ folder"))
            continue
        folders.append(
            (entry.name, sorted(p for p in entry.iterdir() if not p.name.startswith(".")))
        )
    enrolled_images, already, touched, crowded = 0, 0, set(), 0
    progress = tqdm(
        total=sum(len(files) for _, files in folders), unit="photo", desc="enroll", file=sys.stderr
    )
    with store, progress:
        try:
            for name, files in folders:
                known = store.enrolled_hashes(name)
                usable = bool(known)
                pending: list[Enrolment] = []
                for file in files:
                    progress.update()
                    try:
                        sha = file_sha256(file.read_bytes())
                    except OSError as exc:
                        skipped.append((str(file), f"cannot read ({exc.strerror})"))
                        continue
                    if sha in known:
                        already += 1
                        continue
                    try:
                        image = load_rgb(file)
                        face = pipe.embed_image(image, multi_face)[0]
                    except (BadImageError, FaceInputError) as exc:
                        skipped.append((str(file), exc.reason))
                        continue
                    known.add(sha)
                    crowded += face.faces_in_image > 1
                    pending.append(
                        Enrolment(face.embedding, str(file), sha, thumbnail_jpeg(image, face.face))
                    )
                    if len(pending) >= ENROLL_BATCH:
                        enrolled_images += store.add(name, pending)[0]
                        touched.add(name)
                        usable, pending = True, []
                if pending:
                    enrolled_images += store.add(name, pending)[0]
                    touched.add(name)
                    usable = True
                if not usable:
                    skipped.append(
                        (f"{directory / name}", "identity not enrolled: no usable photo")
                    )
        except KeyboardInterrupt:
            progress.close()
            typer.echo(
                f"interrupted: {enrolled_images} photos committed to {gallery}; run the same "
                "command again to add the rest",
                err=True,
            )
            raise typer.Exit(130) from None
        normalizer = search_normalizer(encoder, DEFAULT_STUDENT)
        if normalizer is not None and touched:  # gallery-side statistics, once per change
            store.update_identity_stats(normalizer, sorted(touched))
        total = len(store)
    typer.echo(
        f"enrolled {enrolled_images} photos of {len(touched)} identities into {gallery} "
        f"({total} identities in total)"
        + (f"; {already} photos were already enrolled" if already else "")
    )
    if crowded:
        kept = "largest" if multi_face == "largest" else "clearly largest"
        typer.echo(f"{crowded} of those photos held several faces; the {kept} one was enrolled")
    if skipped:
        typer.echo(f"skipped {len(skipped)}:", err=True)
        for path, reason in skipped:
            typer.echo(f"  {path}: {reason}", err=True)
        counts = Counter(_reason_kind(reason) for _, reason in skipped)
        typer.echo("by reason: " + ", ".join(f"{n} {k}" for k, n in counts.most_common()), err=True)


def _check_writable(path: Path) -> None:
    """Fail now, not after minutes of embedding, when ``path`` cannot be written."""
    if path.is_dir():
        raise _fail(f"{path}: is a directory; give a gallery file path")
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise _fail(f"{path}: cannot be created, {parent} is a file, not a directory")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK) or not os.access(parent, os.W_OK | os.X_OK):
        raise _fail(f"{path}: cannot be written (no permission on {target})")


def _reason_kind(reason: str) -> str:
    """Group skip reasons for the summary (drop the per-file details in parentheses)."""
    return reason.split(" (")[0]


@gallery_app.command("search")
def search_command(
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
    ] = DEFAULT_SCORING,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Who is in IMAGE? For each face: the best identity, or **unknown** when its score is under
    the open-set threshold calibrated for the face's resolution and the encoder that served it
    (set at a stated false-positive identification rate on LFW people outside the gallery:
    docs/openset.md); then the top-k identities with cosine scores."""
    import numpy as np

    from lrface.data.images import BadImageError
    from lrface.pipeline import (
        MULTI_FACE_POLICIES,
        Calibration,
        FaceInputError,
        identify,
        search_normalizer,
    )
    from lrface.pipeline import default_calibrations as defaults
    from lrface.search.gallery import GalleryError

    student = chosen_student(student)
    _check_policy(multi_face, MULTI_FACE_POLICIES)
    if scoring not in ("raw", DEFAULT_SCORING):
        raise typer.BadParameter(f"one of raw, {DEFAULT_SCORING}", param_hint="--scoring")
    with _open_store(gallery) as store:
        if not len(store):
            raise _fail(
                f"{gallery}: the gallery is empty; enroll identities first "
                f"(lrface gallery enroll DIR --gallery {gallery})"
            )
        gal = store.load_gallery(search_normalizer(store.encoder_name, student, scoring))
    try:
        calibs = [Calibration.load(calibration)] if calibration else []
        calibs += defaults(gal.encoder_name, student, scoring)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    pipe = _pipeline(gal.encoder_name, student, detector, min_face, size_cutoff, multi_face, device)
    try:
        gal.check_compatible(pipe.teacher.cache_key, pipe.dim, gallery)
        faces = pipe.embed_image(image)
        book = pipe.thresholds(calibs)
    except (BadImageError, FaceInputError, GalleryError, ValueError) as exc:
        raise _fail(str(exc)) from None
    matches = gal.search(np.stack([f.embedding for f in faces]), k, [f.ref for f in faces])
    answers = [
        identify(book, f, ms, gal.encoder, threshold, gal.scoring_for(f.encoder))
        for f, ms in zip(faces, matches, strict=True)
    ]
    if as_json:
        out = [
            {
                **f.to_dict(),
                **a.to_dict(),
                "scoring": gal.scoring_for(f.encoder),
                "matches": [m.to_dict() for m in ms],
            }
            for f, a, ms in zip(faces, answers, matches, strict=True)
        ]
        typer.echo(json.dumps(out, indent=2))
        return
    for face, answer, ms in zip(faces, answers, matches, strict=True):
        typer.echo(f"{_face_line(face)}:")
        typer.echo(f"  answer: {answer.describe()}")
        for rank, m in enumerate(ms, 1):
            cosine = "" if m.raw is None else f"  (cosine {m.raw:.4f})"
            typer.echo(f"  {rank}. {m.name}  {m.score:.4f}{cosine}")


@gallery_app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(help="Identity to remove.")], gallery: GalleryOpt
) -> None:
    """Remove an identity and everything enrolled for it (embeddings, thumbnails, sources)."""
    with _open_store(gallery) as store:
        try:
            store.remove(name)
        except KeyError:
            raise _fail(f"{gallery}: no identity named {name!r}") from None
        left = len(store)
    typer.echo(f"removed {name!r}; {left} identities left in {gallery}")


@gallery_app.command("list")
def list_command(gallery: GalleryOpt) -> None:
    """The gallery's encoder and identities with their photo counts."""
    with _open_store(gallery) as store:
        people = store.identities()
        typer.echo(f"{gallery}: {len(people)} identities, encoder {store.encoder} ({store.dim}-d)")
    for person in people:
        typer.echo(f"  {person.name}\t{person.photos} photo(s)")


@gallery_app.command("migrate")
def migrate_command(
    old: Annotated[Path, typer.Argument(help="Gallery of the older format (.safetensors).")],
    new: Annotated[Path, typer.Argument(help="New SQLite gallery (must not exist).")],
) -> None:
    """Copy a single-file gallery into a new SQLite database (the old file is left as it is)."""
    from lrface.search.gallery import GalleryError
    from lrface.search.store import migrate

    try:
        identities, photos = migrate(old, new)
    except GalleryError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"migrated {identities} identities ({photos} photos) from {old} into {new}")
