"""Aligned face chips for a list of image files, cached on disk so alignment runs once.

Cache: ``<cache>/chips/<settings key>/<sha1[:2]>/<sha1>.png`` where sha1 is of the image file's
bytes, so a renamed file hits the cache and an edited one misses it. A chip made by the
centre fallback carries ``lrface-fallback=1`` in its PNG text, so the count survives caching.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin
from tqdm import tqdm

from lrface.data.images import BadImageError, load_rgb
from lrface.detect.dlib_align import AlignSettings, DlibAligner
from lrface.paths import cache_dir


@dataclass
class ChipSet:
    """Chips of the files that aligned; failures keep the reason for every file that did not.

    keys: sha1 of each source file. align_key: the ``AlignSettings`` key the chips were cut
    with; caches of anything computed from the chips (embeddings) include it,
    so a change of alignment can never serve results computed from other chips.
    """

    chips: np.ndarray
    relpaths: list[str]
    keys: list[str]
    failures: dict[str, str] = field(default_factory=dict)
    fallbacks: set[str] = field(default_factory=set)
    align_key: str = ""

    def __post_init__(self) -> None:
        self.index = {relpath: row for row, relpath in enumerate(self.relpaths)}

    def __len__(self) -> int:
        return len(self.relpaths)

    def rows(self, relpaths: list[str]) -> np.ndarray:
        return np.array([self.index[p] for p in relpaths], dtype=np.int64)

    def subset(self, relpaths: list[str]) -> ChipSet:
        rows = self.rows(relpaths)
        return ChipSet(
            self.chips[rows],
            list(relpaths),
            [self.keys[r] for r in rows],
            {},
            {p for p in relpaths if p in self.fallbacks},
            self.align_key,
        )


@dataclass(frozen=True)
class _Outcome:
    relpath: str
    key: str | None
    chip: np.ndarray | None
    fallback: bool
    error: str | None


_ALIGNER: DlibAligner | None = None


def _chip_path(root: Path, key: str) -> Path:
    return root / key[:2] / f"{key}.png"


def _from_cache(args: tuple[Path, str, AlignSettings, Path]) -> _Outcome | str:
    """The cached chip of one file (or its read error), else the file's key: it must be aligned."""
    root, relpath, _, store = args
    path = root / relpath
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _Outcome(relpath, None, None, False, f"{path}: cannot read ({exc.strerror})")
    key = hashlib.sha1(data).hexdigest()
    cached = _chip_path(store, key)
    if not cached.is_file():
        return key
    with Image.open(cached) as img:
        return _Outcome(
            relpath,
            key,
            np.asarray(img.convert("RGB")),
            img.info.get("lrface-fallback") == "1",
            None,
        )


def _align_one(args: tuple[Path, str, AlignSettings, Path, str]) -> _Outcome:
    """Align one file whose key ``_from_cache`` found missing; write the cache (in workers)."""
    global _ALIGNER
    root, relpath, settings, store, key = args
    path = root / relpath
    cached = _chip_path(store, key)
    try:
        image = load_rgb(path)
    except BadImageError as exc:
        return _Outcome(relpath, key, None, False, str(exc))
    if _ALIGNER is None or _ALIGNER.settings != settings:
        _ALIGNER = DlibAligner(settings)
    result = _ALIGNER.align(image)
    if result.chip is None:
        return _Outcome(relpath, key, None, False, f"{path}: no face found")
    cached.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("lrface-fallback", "1" if result.fallback else "0")
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    Image.fromarray(result.chip).save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, cached)
    return _Outcome(relpath, key, result.chip, result.fallback, None)


def aligned_chips(
    root: str | os.PathLike,
    relpaths: list[str],
    settings: AlignSettings | None = None,
    progress: bool = True,
    workers: int = 1,
) -> ChipSet:
    """Aligned chips of ``root/relpath`` for each relpath; bad files are recorded, not fatal.

    Default settings: LFW's (centre-box fallback) for an LFW root (one with ``pairs.txt``),
    else no fallback, so an image of another source where no face is found is skipped and
    listed in ``failures`` rather than cut by a box that assumes LFW's framing.
    """
    root = Path(root)
    if settings is None:
        is_lfw = (root / "pairs.txt").is_file()
        settings = AlignSettings() if is_lfw else AlignSettings(centre_fallback=False)
    store = cache_dir() / "chips" / settings.key
    jobs = [(root, relpath, settings, store) for relpath in dict.fromkeys(relpaths)]
    bar = tqdm(total=len(jobs), desc="align", unit="img", disable=not progress, leave=False)
    done: dict[str, _Outcome] = {}
    pending = []
    for job in jobs:  # cache hits first, in this process: no pool when nothing is new
        found = _from_cache(job)
        if isinstance(found, str):
            pending.append((*job, found))
        else:
            done[job[1]] = found
            bar.update()
    if workers > 1 and len(pending) > 64:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for outcome in pool.map(_align_one, pending, chunksize=32):
                done[outcome.relpath] = outcome
                bar.update()
    else:
        for job in pending:
            done[job[1]] = _align_one(job)
            bar.update()
    bar.close()
    outcomes = [done[job[1]] for job in jobs]
    good = [o for o in outcomes if o.error is None]
    chips = (
        np.stack([o.chip for o in good])
        if good
        else np.zeros((0, settings.size, settings.size, 3), np.uint8)
    )
    return ChipSet(
        chips=chips,
        relpaths=[o.relpath for o in good],
        keys=[o.key for o in good],
        failures={o.relpath: o.error for o in outcomes if o.error is not None},
        fallbacks={o.relpath for o in good if o.fallback},
        align_key=settings.key,
    )
