"""Where lrface finds data and keeps its caches.

LFW: ``--lfw PATH``, else ``$LRFACE_LFW``, else ``../shared/data/lfw`` relative to the working
directory or to the repository checkout. UTKFace the same way (``$LRFACE_UTKFACE``,
``../shared/data/utkface``). Caches: ``$LRFACE_CACHE``, else ``~/.cache/lrface``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LFW_HELP = (
    "LFW was not found. Download the deep-funneled LFW (lfw-deepfunneled) and its pairs.txt, "
    "pairsDevTrain.txt and pairsDevTest.txt from http://vis-www.cs.umass.edu/lfw/ (or the "
    "Kaggle/TFDS mirrors), unpack it so that <root>/<Name>/<Name>_0001.jpg and <root>/pairs.txt "
    "exist, and pass --lfw <root> or set LRFACE_LFW=<root>."
)

_REPO_ROOT = Path(__file__).resolve().parents[2]


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset root cannot be located; the message says where to get it."""


def default_lfw_candidates() -> list[Path]:
    """The places searched for LFW when none is given, in order."""
    found = []
    if os.environ.get("LRFACE_LFW"):
        found.append(Path(os.environ["LRFACE_LFW"]))
    found.append(Path.cwd().parent / "shared" / "data" / "lfw")
    found.append(_REPO_ROOT.parent / "shared" / "data" / "lfw")
    return found


def resolve_lfw(path: str | os.PathLike | None = None) -> Path:
    """Return the LFW root, or raise DatasetNotFoundError with instructions."""
    candidates = [Path(path)] if path is not None else default_lfw_candidates()
    for candidate in candidates:
        if (candidate / "pairs.txt").is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise DatasetNotFoundError(f"{LFW_HELP} (looked in: {tried})")


UTKFACE_HELP = (
    "UTKFace was not found. Get the 'Aligned&Cropped Faces' archive (UTKFace.tar.gz) from "
    "https://susanqq.github.io/UTKFace/, unpack it so that <root>/<age>_<gender>_<race>_<time>"
    ".jpg.chip.jpg exist, and pass --utkface <root> or set LRFACE_UTKFACE=<root>."
)


def resolve_utkface(path: str | os.PathLike | None = None) -> Path:
    """Return the UTKFace root (a flat folder of face crops), or raise DatasetNotFoundError."""
    if path is not None:
        candidates = [Path(path)]
    else:
        candidates = (
            [Path(os.environ["LRFACE_UTKFACE"])] if os.environ.get("LRFACE_UTKFACE") else []
        )
        candidates += [
            Path.cwd().parent / "shared" / "data" / "utkface",
            _REPO_ROOT.parent / "shared" / "data" / "utkface",
        ]
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.jpg")):
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise DatasetNotFoundError(f"{UTKFACE_HELP} (looked in: {tried})")


ARCADE_VIDEO = "arcade-1080p.mp4"
"""A real crowd walking towards the camera, 105 frames at 1080p (the real-footage benchmarks)."""


def shared_video(name: str = ARCADE_VIDEO) -> Path:
    """A clip of the shared data's ``video`` folder (``../shared/data/video`` from the working
    directory or the checkout); DatasetNotFoundError naming where it looked."""
    candidates = [
        Path.cwd().parent / "shared" / "data" / "video" / name,
        _REPO_ROOT.parent / "shared" / "data" / "video" / name,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise DatasetNotFoundError(f"video {name} was not found (looked in: {tried})")


def cache_dir() -> Path:
    """Root of all on-disk caches (chips, embeddings, downloaded weights)."""
    root = Path(os.environ.get("LRFACE_CACHE", Path.home() / ".cache" / "lrface"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (weights files are large)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def readable_by_umask(path: str | os.PathLike) -> None:
    """Give a file the mode the user's umask gives new files. safetensors writes every file
    owner-only (0600) whatever the umask; weights, checkpoints and caches hold no biometric data,
    so they follow the umask like the JSON beside them. Galleries stay owner-only on purpose."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
