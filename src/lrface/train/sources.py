"""Training faces from outside LFW: unlabelled face folders, decontaminated against LFW.

``decontaminate`` aligns a face folder and every LFW image, embeds both with the teacher (HR,
flip-averaged, cached), sets the threshold at a per-comparison false accept rate over LFW's
different-person pairs (``data.decontaminate``) and lists every folder image whose best LFW
match reaches it. The list ships with the package
(``data.unlabelled.DECONTAMINATION_DIR/<name>.json``) and ``unlabelled_training_set`` always
drops the files it names, so no LFW figure is made by a model that trained on a face of an
LFW person.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrface.data.chips import ChipSet, aligned_chips
from lrface.data.decontaminate import best_matches, impostor_threshold
from lrface.data.degrade import EvalDegradation
from lrface.data.lfw import LFW
from lrface.data.unlabelled import load_exclusions, resolve_folder, unlabelled_chips
from lrface.eval.embeddings import embed_chipset
from lrface.models.encoder import FaceEncoder

DEFAULT_FAR = 1e-5


@dataclass
class UnlabelledSet:
    """A folder's usable training chips and their teacher embeddings."""

    name: str
    root: Path
    chipset: ChipSet
    teacher_emb: np.ndarray
    excluded: int


def unlabelled_training_set(
    spec: str, teacher: FaceEncoder, flip: bool = True, progress: bool = True, workers: int = 1
) -> UnlabelledSet:
    """Aligned chips (minus the decontamination list) and HR teacher embeddings of a folder."""
    name, root = resolve_folder(spec)
    excluded = load_exclusions(name, spec)
    chipset = unlabelled_chips(root, exclude=excluded, progress=progress, workers=workers)
    emb = embed_chipset(teacher, chipset, EvalDegradation(None), flip=flip, progress=progress)
    return UnlabelledSet(name, root, chipset, emb, len(excluded))


def decontaminate(
    spec: str,
    teacher: FaceEncoder,
    lfw_root: str | None = None,
    far: float = DEFAULT_FAR,
    progress: bool = True,
    workers: int = 1,
) -> dict:
    """The decontamination report of a face folder against every LFW image (see module)."""
    name, root = resolve_folder(spec)
    lfw = LFW(lfw_root)
    images = lfw.images()
    lfw_chips = aligned_chips(
        lfw.root, [im.relpath for im in images], progress=progress, workers=workers
    )
    identity = {im.relpath: im.identity for im in images}
    lfw_ids = np.array([identity[p] for p in lfw_chips.relpaths])
    hr = EvalDegradation(None)
    lfw_emb = embed_chipset(teacher, lfw_chips, hr, flip=True, progress=progress)
    threshold = impostor_threshold(lfw_emb, lfw_ids, far)
    folder = unlabelled_chips(root, progress=progress, workers=workers)
    folder_emb = embed_chipset(teacher, folder, hr, flip=True, progress=progress)
    index, score = best_matches(folder_emb, lfw_emb)
    order = np.argsort(-score)
    dropped = [
        {
            "file": folder.relpaths[i],
            "lfw": lfw_chips.relpaths[index[i]],
            "score": round(float(score[i]), 5),
        }
        for i in order
        if score[i] >= threshold
    ]
    genuine = _genuine_rate(lfw_emb, lfw_ids, threshold)
    return {
        "folder": name,
        "encoder": teacher.cache_key,
        "embedding": "HR chip, flip-averaged",
        "reference": f"every LFW image that aligned ({len(lfw_chips)} of {len(images)})",
        "far_per_comparison": far,
        "threshold": round(threshold, 5),
        "lfw_same_person_pairs_above_threshold": round(genuine, 4),
        "images": len(folder) + len(folder.failures),
        "aligned": len(folder),
        "whole_image_fallbacks": len(folder.fallbacks),
        "unreadable": sorted(folder.failures.values()),
        "dropped_count": len(dropped),
        "dropped": dropped,
    }


def _genuine_rate(emb: np.ndarray, identities: np.ndarray, threshold: float) -> float:
    """Share of LFW's same-person image pairs scoring at least ``threshold``: how many true
    matches of a person the threshold would catch."""
    hits = total = 0
    for person in np.unique(identities):
        rows = np.flatnonzero(identities == person)
        if len(rows) < 2:
            continue
        sims = emb[rows] @ emb[rows].T
        upper = sims[np.triu_indices(len(rows), 1)]
        hits += int((upper >= threshold).sum())
        total += len(upper)
    return hits / max(total, 1)


def contact_sheet(report: dict, lfw_root: str | Path | None, path: Path, rows: int = 8) -> None:
    """PNG of matched pairs (folder image | its best LFW image | score): the strongest matches
    and those just above the threshold, where a wrong threshold would show."""
    from PIL import Image, ImageDraw

    from lrface.data.images import load_rgb

    name, root = resolve_folder(report["folder"])
    lfw = LFW(lfw_root)
    dropped = report["dropped"]
    ends = list(range(rows // 2)) + list(range(len(dropped) - (rows - rows // 2), len(dropped)))
    picks = [dropped[i] for i in dict.fromkeys(i for i in ends if 0 <= i < len(dropped))]
    side, label = 112, 18
    sheet = Image.new(
        "RGB", (2 * (2 * side + 8), ((len(picks) + 1) // 2) * (side + label)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for i, match in enumerate(picks):
        x, y = (i % 2) * (2 * side + 8), (i // 2) * (side + label)
        for j, image in enumerate((root / match["file"], lfw.path(match["lfw"]))):
            tile = Image.fromarray(load_rgb(image)).resize((side, side))
            sheet.paste(tile, (x + j * side, y))
        person = match["lfw"].split("/")[0].replace("_", " ")
        draw.text((x + 2, y + side + 2), f"{match['score']:.3f} {person}"[:34], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
