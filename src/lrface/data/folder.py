"""Generic ``<root>/<identity>/<image>`` datasets for users' own data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lrface.constants import IMAGE_SUFFIXES


@dataclass(frozen=True)
class IdentityImage:
    """One image of one identity; ``relpath`` is relative to the dataset root."""

    identity: str
    relpath: str


def list_identity_folder(root: str | os.PathLike) -> list[IdentityImage]:
    """All image files one level below each identity folder, sorted for reproducibility."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of <identity>/<image> folders")
    found = []
    for identity_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(identity_dir.iterdir()):
            if image.is_file() and image.suffix.lower() in IMAGE_SUFFIXES:
                found.append(IdentityImage(identity_dir.name, f"{identity_dir.name}/{image.name}"))
    return found
