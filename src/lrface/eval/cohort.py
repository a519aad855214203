"""Building the score-normalization cohort (``lrface.search.cohort``) from faces of nobody in LFW
View 2: one photo (the first by file name) of every LFW person named in no View 2 pair, then a
seeded sample of UTKFace minus the files its decontamination list matched to an LFW image,
up to ``size`` faces that align. Embedded like the open-set protocol's gallery and probes
(teacher at full size; the probe encoder at each band, area-downsampled, no flip), through the
embedding cache, so a rebuild with the same seed gives the same file.
"""

from __future__ import annotations

import numpy as np

from lrface.constants import TEMPLATE_FLIP
from lrface.data.chips import ChipSet, aligned_chips
from lrface.data.degrade import EvalDegradation
from lrface.data.lfw import LFW
from lrface.data.unlabelled import (
    list_face_folder,
    load_exclusions,
    resolve_folder,
    unlabelled_chips,
)
from lrface.eval.embeddings import embed_chipset
from lrface.models.encoder import FaceEncoder
from lrface.search.cohort import Cohort, unit

DEFAULT_SIZE = 2000
DEFAULT_BANDS: tuple[int | None, ...] = (8, 12, 16, 20, 24, 32, None)


def outside_view2(lfw: LFW) -> list[str]:
    """Relpath of the first photo of each LFW person named in no View 2 pair."""
    named = {name for pair in lfw.view2() for name in pair.people}
    first: dict[str, str] = {}
    for image in lfw.images():
        if image.identity not in named and image.identity not in first:
            first[image.identity] = image.relpath
    return [first[p] for p in sorted(first)]


def cohort_chips(
    lfw: LFW,
    utkface: str | None,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
) -> tuple[list[ChipSet], dict]:
    """The cohort's aligned chips (LFW outside View 2, then UTKFace) and how they were chosen."""
    lfw_chips = aligned_chips(lfw.root, outside_view2(lfw), progress=progress, workers=workers)
    if len(lfw_chips) >= size:
        lfw_chips = lfw_chips.subset(lfw_chips.relpaths[:size])
    sets, info = [lfw_chips], {"lfw_outside_view2": len(lfw_chips), "seed": seed}
    wanted = size - len(lfw_chips)
    if wanted > 0:
        name, root = resolve_folder(utkface or "utkface")
        excluded = load_exclusions(name, utkface)
        names = [n for n in list_face_folder(root) if n not in excluded]
        order = np.random.default_rng(seed).permutation(len(names))
        # a margin for files that do not align, then the first ``wanted`` that did, in order
        picked = [names[i] for i in order[: wanted + wanted // 10 + 10]]
        chips = unlabelled_chips(root, names=picked, progress=progress, workers=workers)
        kept = [n for n in picked if n in chips.index][:wanted]
        sets.append(chips.subset(kept))
        info.update({"folder": name, "folder_faces": len(kept), "folder_excluded": len(excluded)})
    return sets, info


def embed_cohort(
    chipsets: list[ChipSet],
    gallery_encoder: FaceEncoder,
    probe_encoder: FaceEncoder,
    bands: tuple[int | None, ...] = DEFAULT_BANDS,
    progress: bool = True,
    template_flip: bool = TEMPLATE_FLIP,
    probe_flip: bool = False,
) -> tuple[np.ndarray, dict[int | None, np.ndarray]]:
    """Gallery-side (``gallery_encoder``, full size, mirrored as templates are: ``template_flip``)
    and probe-side (``probe_encoder`` per band, without flip as probes are unless
    ``probe_flip``) unit embeddings of the cohort chips, rounded to float16 as shipped."""

    def embed(encoder: FaceEncoder, size: int | None, flip: bool = False) -> np.ndarray:
        degradation = EvalDegradation(size)
        rows = [embed_chipset(encoder, c, degradation, flip, progress) for c in chipsets]
        return unit(unit(np.concatenate(rows)).astype(np.float16))

    gallery = embed(gallery_encoder, None, template_flip)
    return gallery, {size: embed(probe_encoder, size, probe_flip) for size in bands}


def build_cohort(
    lfw: LFW,
    gallery_encoder: FaceEncoder,
    probe_encoder: FaceEncoder,
    name: str,
    utkface: str | None = None,
    size: int = DEFAULT_SIZE,
    bands: tuple[int | None, ...] = DEFAULT_BANDS,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
) -> Cohort:
    """The cohort of ``probe_encoder`` (stored under ``name``), as ``lrface build-cohort``
    writes it."""
    chipsets, info = cohort_chips(lfw, utkface, size, seed, progress, workers)
    gallery, by_band = embed_cohort(chipsets, gallery_encoder, probe_encoder, bands, progress)
    info.update(
        {
            "faces": len(gallery),
            "gallery_encoder": gallery_encoder.cache_key,
            "probe_encoder": probe_encoder.cache_key,
            "embedding": "aligned chip, area-downsampled per band, no flip",
            "gallery_flip": TEMPLATE_FLIP,
        }
    )
    return Cohort(name, gallery, by_band, info)
