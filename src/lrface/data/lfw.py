"""Labeled Faces in the Wild: image layout, the official pair lists and their folds.

Layout: ``<root>/<Name>/<Name>_<NNNN>.jpg`` with ``pairs.txt`` (View 2: header ``10 300``, ten
folds of 300 same-person lines ``name i j`` then 300 different-person lines
``name1 i name2 j``) and ``pairsDevTrain.txt`` / ``pairsDevTest.txt`` (View 1: header ``N``,
N same then N different lines). View 2 folds are person-disjoint, so the people of a fold
are exactly the names that occur in its lines.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lrface.data.folder import IdentityImage, list_identity_folder
from lrface.paths import resolve_lfw

VIEW2_FILE = "pairs.txt"
VIEW1_TRAIN_FILE = "pairsDevTrain.txt"
VIEW1_TEST_FILE = "pairsDevTest.txt"


class PairsFormatError(ValueError):
    """A malformed pairs file; the message names the file and line number."""


@dataclass(frozen=True)
class Pair:
    """One verification pair: two image paths relative to the root, and the ground truth."""

    fold: int
    first: str
    second: str
    same: bool

    @property
    def people(self) -> tuple[str, str]:
        return (self.first.split("/")[0], self.second.split("/")[0])


def image_relpath(name: str, index: int) -> str:
    """Relative path of the index-th (1-based) image of a person."""
    return f"{name}/{name}_{index:04d}.jpg"


def parse_pairs(path: str | os.PathLike) -> list[Pair]:
    """Parse a pairs file of either view. Folds are numbered from 0."""
    path = Path(path)
    lines = path.read_text().splitlines()
    if not lines:
        raise PairsFormatError(f"{path}: empty pairs file")
    header = lines[0].split()
    bad_header = f"{path}:1: header must be 'folds per_fold' or 'N', got {lines[0]!r}"
    try:
        numbers = [int(x) for x in header]
    except ValueError:
        raise PairsFormatError(bad_header) from None
    if len(numbers) == 2:
        n_folds, per_fold = numbers
    elif len(numbers) == 1:
        n_folds, per_fold = 1, numbers[0]
    else:
        raise PairsFormatError(bad_header)
    body = [(i + 2, line) for i, line in enumerate(lines[1:]) if line.strip()]
    expected = n_folds * 2 * per_fold
    if len(body) != expected:
        raise PairsFormatError(
            f"{path}: header promises {expected} pair lines ({n_folds} folds x 2 x {per_fold}), "
            f"found {len(body)}"
        )
    pairs = []
    for position, (line_no, line) in enumerate(body):
        fold, within = divmod(position, 2 * per_fold)
        want_same = within < per_fold
        pairs.append(_parse_line(path, line_no, line, fold, want_same))
    return pairs


def _parse_line(path: Path, line_no: int, line: str, fold: int, want_same: bool) -> Pair:
    fields = line.split()
    try:
        if len(fields) == 3:
            name, i, j = fields[0], int(fields[1]), int(fields[2])
            pair = Pair(fold, image_relpath(name, i), image_relpath(name, j), True)
        elif len(fields) == 4:
            a, i, b, j = fields[0], int(fields[1]), fields[2], int(fields[3])
            pair = Pair(fold, image_relpath(a, i), image_relpath(b, j), False)
        else:
            raise ValueError(f"expected 3 or 4 fields, got {len(fields)}")
    except ValueError as exc:
        raise PairsFormatError(f"{path}:{line_no}: malformed pair line {line!r} ({exc})") from None
    if pair.same != want_same:
        kind = "same-person (name i j)" if want_same else "different-person (name1 i name2 j)"
        raise PairsFormatError(f"{path}:{line_no}: expected a {kind} line here, got {line!r}")
    return pair


def fold_people(pairs: Iterable[Pair]) -> dict[int, set[str]]:
    """The people named in each fold's pairs."""
    people: dict[int, set[str]] = {}
    for pair in pairs:
        people.setdefault(pair.fold, set()).update(pair.people)
    return people


class LFW:
    """An LFW root: its images, its pair lists and its person-disjoint folds."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_lfw(root)
        self._images: list[IdentityImage] | None = None

    def images(self) -> list[IdentityImage]:
        """Every image, sorted by identity then file name."""
        if self._images is None:
            self._images = list_identity_folder(self.root)
        return self._images

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def view2(self) -> list[Pair]:
        return parse_pairs(self.root / VIEW2_FILE)

    def view1_train(self) -> list[Pair]:
        return parse_pairs(self.root / VIEW1_TRAIN_FILE)

    def view1_test(self) -> list[Pair]:
        return parse_pairs(self.root / VIEW1_TEST_FILE)

    def pairs(self, view: str) -> list[Pair]:
        """``view2``, ``view1`` (= the dev test list) or ``view1-train``."""
        readers = {"view2": self.view2, "view1": self.view1_test, "view1-train": self.view1_train}
        if view not in readers:
            raise ValueError(f"unknown LFW view {view!r}; choose one of {sorted(readers)}")
        return readers[view]()

    def training_images(self, held_out_people: set[str]) -> list[IdentityImage]:
        """Images of everyone not in ``held_out_people`` (the people of the test fold)."""
        return [im for im in self.images() if im.identity not in held_out_people]
