"""Folders of face images without identity labels (UTKFace first), as training faces.

A flat folder of face crops is listed in sorted order and aligned by the same dlib aligner as
LFW, with ``TIGHT_CROP_ALIGN`` (no LFW centre box: a tight crop is its own face box). Chips are
cached like LFW's (``data.chips``). Without labels, each image is its own identity: the
label-free form of the identity terms (``label_free_labels``) gives every image a label of its
own after the labelled ones, so its identity centre is its own HR teacher embedding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lrface.constants import IMAGE_SUFFIXES
from lrface.data.chips import ChipSet, aligned_chips
from lrface.detect.dlib_align import TIGHT_CROP_ALIGN, AlignSettings
from lrface.paths import cache_dir, resolve_utkface


def list_face_folder(root: str | os.PathLike) -> list[str]:
    """File names of the images directly inside ``root``, sorted (the dataset's order)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of face images")
    return sorted(
        p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


DECONTAMINATION_DIR = Path(__file__).resolve().parent / "decontamination"
"""Shipped, read-only package data: ``<folder name>.json`` per decontaminated face folder."""


def resolve_folder(spec: str) -> tuple[str, Path]:
    """``(name, root)`` of an unlabelled folder given as ``utkface`` or a path."""
    if spec == "utkface":
        return "utkface", resolve_utkface()
    root = Path(spec)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of face images")
    return root.name, root


def user_decontamination_path(name: str) -> Path:
    """Where ``lrface decontaminate`` writes a folder's list by default (the user's cache;
    the installed package is never written to)."""
    return cache_dir() / "decontamination" / f"{name}.json"


def decontamination_path(name: str) -> Path:
    """The list training on folder ``name`` applies: the user's own (``lrface decontaminate``)
    if there is one, else the shipped one (which may not exist)."""
    user = user_decontamination_path(name)
    return user if user.is_file() else DECONTAMINATION_DIR / f"{name}.json"


def load_exclusions(name: str, spec: str | None = None) -> set[str]:
    """File names of folder ``name`` (given as ``spec``) that match an LFW image;
    FileNotFoundError if the folder was never decontaminated."""
    path = decontamination_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"no decontamination list for face folder {name!r} (neither "
            f"{user_decontamination_path(name)} nor the shipped {path}); run "
            f"`lrface decontaminate {spec or name}` before training on it"
        )
    return {row["file"] for row in json.loads(path.read_text())["dropped"]}


def unlabelled_chips(
    root: str | os.PathLike,
    names: list[str] | None = None,
    exclude: set[str] | frozenset[str] = frozenset(),
    settings: AlignSettings = TIGHT_CROP_ALIGN,
    progress: bool = True,
    workers: int = 1,
) -> ChipSet:
    """Aligned chips of a face folder (all its images, or ``names``), minus ``exclude``.

    Files that cannot be read or aligned are in the result's ``failures``; chips cut by the
    whole-image fallback are in its ``fallbacks``.
    """
    names = list_face_folder(root) if names is None else names
    kept = [name for name in names if name not in exclude]
    return aligned_chips(root, kept, settings, progress=progress, workers=workers)


def label_free_labels(count: int, first: int = 0) -> np.ndarray:
    """One identity per image: labels ``first .. first + count - 1``."""
    return np.arange(first, first + count, dtype=np.int64)
