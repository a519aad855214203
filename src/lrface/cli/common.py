"""What every command module shares: the options, the one error convention, and opening
encoders, detectors, pipelines and galleries. Command modules import this one, never each other.

The error convention: a problem the user can fix (a missing file, an unknown encoder, a bad
option value, an unusable gallery) ends the command with ONE line on stderr, ``error: `` and
the message, which names the file or option and says what is wrong, and exit status
``USER_ERROR`` (1). Click's own parsing errors (an unknown option, a value that is not a
number) keep click's status 2; an interrupted run exits 130.

numpy, torch and the detectors are imported inside the functions, so ``lrface --help`` starts
fast (tests/cli/test_startup.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from lrface.constants import DEFAULT_SIZE_CUTOFF

USER_ERROR = 1
INTERRUPTED = 130

DetectorOpt = Annotated[str, typer.Option(help="Face detector: mtcnn or dlib.")]
MinFaceOpt = Annotated[
    float,
    typer.Option(
        help="MTCNN: smallest face searched for, px (>= 6; under 12 the image is upscaled for "
        "it: slower).",
        min=6,
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda.")]
LfwOpt = Annotated[
    Path | None, typer.Option(help="LFW root (else $LRFACE_LFW, ../shared/data/lfw).")
]
WorkersOpt = Annotated[int, typer.Option(help="Processes for face alignment.")]
RuntimeOpt = Annotated[
    str,
    typer.Option(
        help="Run the face encoders on the CPU with onnx (ONNX Runtime: same embeddings, "
        "faster on a few faces at a time) or torch (PyTorch).",
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
        f"measured cutoff, else {DEFAULT_SIZE_CUTOFF:g} px, lrface.constants.DEFAULT_SIZE_CUTOFF)."
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="Intra-op threads of the models (default: $LRFACE_THREADS, else half the CPUs: "
        "a busy host runs slower with one thread per core).",
        min=1,
    ),
]
MultiOpt = Annotated[
    str,
    typer.Option(
        help="Several faces in an image: all (compare or search each), dominant (the largest "
        "if clearly largest, else refuse), largest, or error."
    ),
]
GalleryOpt = Annotated[
    str,
    typer.Option(
        help="Gallery: an SQLite file (e.g. watchlist.db; enroll creates it) or a PostgreSQL "
        "database, postgresql://user@host/db (shared by several servers and cameras)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise (``raise fail(...)``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(USER_ERROR)


@contextlib.contextmanager
def reported(*errors: type[BaseException], option: str | None = None) -> Iterator[None]:
    """Turn ``errors`` (default: ValueError and OSError, which lrface raises with messages
    naming the file) raised inside the block into the one-line exit, prefixed by ``option``."""
    caught = errors or (ValueError, OSError)
    try:
        yield
    except caught as exc:
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        raise fail(f"{option}: {message}" if option else message) from None


def check_choice(value: str, allowed: tuple[str, ...] | list[str], option: str) -> str:
    """``value`` if it is one of ``allowed``, else the one-line exit naming the choices."""
    if value not in allowed:
        raise fail(f"{option} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def parse_sizes(text: str) -> list[int | None]:
    """``"8,12,full"`` -> ``[8, 12, None]``."""
    sizes: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("full", "hr"):
            sizes.append(None)
        elif part.isdigit() and int(part) >= 4:
            sizes.append(int(part))
        else:
            raise fail(f"--sizes: size {part!r} is not an integer >= 4 or 'full'")
    return sizes


def parse_floats(text: str, option: str) -> list[float]:
    """``"0.01,0.1"`` -> ``[0.01, 0.1]``."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise fail(f"{option}: {text!r} is not a list of numbers") from None


def chosen_student(student: str | None) -> str | None:
    """The ``--student`` value as an encoder name, ``None`` for 'none'."""
    return None if student is None or student.lower() == "none" else student


def load_encoder(name: str, device: str = "cpu", batch_size: int = 64, option: str = ""):
    """The encoder ``name`` (registered name or checkpoint dir), or the one-line exit."""
    from lrface.models.factory import create_encoder

    try:
        return create_encoder(name, batch_size=batch_size, device=device)
    except (KeyError, RuntimeError, FileNotFoundError, ValueError) as exc:
        message = str(exc.args[0] if exc.args else exc)
        message = message if message.startswith(name) else f"{name}: {message}"
        raise fail(f"{option}: {message}" if option else message) from None


def make_detector(name: str, min_face: float = 20, device: str = "cpu", pyramid: str = "area"):
    """``lrface.pipeline.create_detector``, or the one-line exit when it cannot be built."""
    from lrface.detect.weights import WeightsUnavailableError
    from lrface.pipeline import create_detector

    check_choice(name, ("mtcnn", "dlib"), "--detector")
    with reported(WeightsUnavailableError):
        return create_detector(name, min_face, device, pyramid)


def build_pipeline(
    encoder: str,
    student: str | None,
    detector: str = "mtcnn",
    min_face: float = 20,
    size_cutoff: float | None = None,
    multi_face: str = "all",
    device: str = "cpu",
    runtime: str = "torch",
    pyramid: str = "area",
    threads: int | None = None,
):
    """``lrface.pipeline.load_pipeline`` for the options given, each encoder's and the
    detector's problem reported as the one-line exit (the student first: a wrong path is the
    cheapest error to report); ``pyramid``: MTCNN's (``lrface watch``: ``cascade``); its
    models on ``threads`` intra-op threads (``lrface.machine.intra_op_threads``, set before
    ONNX Runtime's sessions are made)."""
    from lrface.machine import intra_op_threads, use_threads
    from lrface.models.onnx_encoder import RUNTIMES
    from lrface.pipeline import MULTI_FACE_POLICIES, load_pipeline

    check_choice(runtime, RUNTIMES, "--runtime")
    check_choice(multi_face, MULTI_FACE_POLICIES, "--multi-face")
    with reported(ValueError):  # a bad $LRFACE_THREADS
        use_threads(intra_op_threads(threads))
    low = load_encoder(student, device) if student else None
    teacher = load_encoder(encoder, device)
    faces = make_detector(detector, min_face, device, pyramid)
    return load_pipeline(teacher, low, faces, min_face, size_cutoff, multi_face, device, runtime)


def open_gallery(path: str, encoder: str | None = None, dim: int | None = None, name=None):
    """``lrface.search.open_gallery`` (open, or create for ``encoder``), or the one-line exit."""
    from lrface.search import open_gallery as open_or_create
    from lrface.search.gallery import GalleryError

    with reported(GalleryError):
        return open_or_create(path, encoder, dim, name)


def load_gallery(path: str):
    """The searchable (faiss) gallery of the store at ``path``; the one-line exit when unusable."""
    with open_gallery(path) as store:
        return store.load_gallery()


def check_writable(target: str) -> None:
    """Fail now, not after minutes of embedding, when the gallery file cannot be written (a
    database is checked when it is opened)."""
    from lrface.search.store import is_database_url

    if is_database_url(target):
        return
    path = Path(target)
    if path.is_dir():
        raise fail(f"{path}: is a directory; give a gallery file path")
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise fail(f"{path}: cannot be created, {parent} is a file, not a directory")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK) or not os.access(parent, os.W_OK | os.X_OK):
        raise fail(f"{path}: cannot be written (no permission on {target})")


def face_line(face) -> str:
    """Which face (of how many), its size, and what served it, for the text outputs."""
    found = face.faces_in_image
    where = "" if found == 1 else f" at {[round(float(v)) for v in face.face.box]}"
    size = "full size" if face.resolution is None else f"{face.resolution} px resolution"
    return (
        f"{found} face{'s' if found != 1 else ''} found; face{where} {face.face.width:.0f} px "
        f"wide ({size}) -> {face.role} {face.encoder_name or face.encoder} "
        f"({face.chip_size} px chip)"
    )


def echo_skipped(skipped: list[tuple[str, str]]) -> None:
    """The skipped inputs on stderr, one line each, then a count by reason."""
    from collections import Counter

    if not skipped:
        return
    typer.echo(f"skipped {len(skipped)}:", err=True)
    for path, reason in skipped:
        typer.echo(f"  {path}: {reason}", err=True)
    counts = Counter(reason.split(" (")[0] for _, reason in skipped)
    typer.echo("by reason: " + ", ".join(f"{n} {k}" for k, n in counts.most_common()), err=True)


def run_info(started: float) -> dict:
    """Version, machine and wall time, recorded with every report a command writes."""
    import time

    from lrface.constants import __version__
    from lrface.machine import describe_machine

    return {
        "lrface_version": __version__,
        "machine": describe_machine(),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
