"""The score-normalization cohort shipped with the package: embeddings of faces of nobody in
LFW View 2, per encoder and resolution band, hash-pinned like the shipped models.

One safetensors file per probe encoder, ``cohorts/<encoder name>.safetensors``, float16:

* ``gallery``: the teacher's embeddings of the full-size cohort faces, averaged with the
  mirrored face's as enrolled templates are (``TEMPLATE_FLIP``; the probe side of a search is
  scored against these);
* ``band-<size>`` (``band-full`` for full size): the encoder's embeddings of the same faces
  degraded to ``size`` px (what a stranger's probe of that size looks like; an enrolled
  template is scored against the band of the probe's size).

The faces (``lrface build-cohort``, ``lrface.eval.cohort``): one photo of each LFW person in no
View 2 pair, and a seeded sample of UTKFace minus its LFW matches. ``MANIFEST`` pins each
file's sha256; a file that does not match is refused with a message naming it. Loading needs
numpy and safetensors only (no torch), like galleries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from lrface.calibration import nearest_size, size_label
from lrface.paths import file_digest, readable_by_umask

COHORT_DIR = Path(__file__).resolve().parent / "cohorts"
META_KEY = "lrface_cohort"

MANIFEST: dict[str, str] = {
    # lrface build-cohort --encoder dlib-resnet-torch --bands 12,16,20,32,64,full --faces 4000
    "dlib-resnet-torch": "7782bf3dec973f9926c7192eeb1c32a5a02c3de4e6702c1970903e099398296e",
    # lrface build-cohort --encoder lrface-lr-v2 --bands 8,12,16,20 --faces 4000 (seed 0)
    "lrface-lr-v2": "e0afe688332ac0caaad6362c694c2a106def7f8c6bad0869b34a43a1d14965a9",
}
"""``{encoder name: sha256 of cohorts/<name>.safetensors}`` of every shipped cohort."""


class CohortIntegrityError(RuntimeError):
    """A shipped cohort file is missing or does not match its pinned hash."""


@dataclass
class Cohort:
    """Unit embeddings of the cohort faces: the gallery side (teacher, full size) and the
    probe side of ``encoder`` per band (``{size or None: N x d}``)."""

    encoder: str
    gallery: np.ndarray
    bands: dict[int | None, np.ndarray]
    info: dict
    digest: str = ""
    """sha256 of the file it was read from."""

    def band_index(self, resolution: int | None) -> int:
        """Index (in ``bands`` order) of the band nearest a probe resolution (log scale, full
        size = 150 px)."""
        return list(self.bands).index(nearest_size(resolution, list(self.bands)))

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"gallery": self.gallery.astype(np.float16)}
        for size, rows in self.bands.items():
            out[f"band-{size_label(size)}"] = rows.astype(np.float16)
        return out


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def read_cohort(path: str | Path, encoder: str | None = None, digest: str | None = None) -> Cohort:
    """A cohort file (any path; ``load_cohort`` checks shipped ones first); ``digest``: its
    sha256 when already known."""
    from safetensors import safe_open

    path = Path(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "np") as f:
            info = json.loads((f.metadata() or {}).get(META_KEY, "{}"))
    except Exception as exc:  # safetensors raises several kinds for a damaged file
        raise ValueError(f"{path}: not a readable cohort file ({exc})") from None
    if "gallery" not in tensors:
        raise ValueError(f"{path}: cohort file has no 'gallery' tensor")
    bands = {}
    for key, rows in tensors.items():
        if key.startswith("band-"):
            label = key[len("band-") :]
            bands[None if label == "full" else int(label)] = unit(rows)
    if not bands:
        raise ValueError(f"{path}: cohort file has no 'band-<size>' tensors")
    name = encoder or info.get("encoder", path.stem)
    return Cohort(name, unit(tensors["gallery"]), bands, info, digest or file_digest(path))


def write_cohort(cohort: Cohort, path: str | Path) -> Path:
    """Write ``cohort`` as float16 safetensors with its description in the header."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {**cohort.info, "encoder": cohort.encoder}
    save_file(cohort.tensors(), str(path), metadata={META_KEY: json.dumps(info)})
    readable_by_umask(path)  # package data, of public face sets: not owner-only
    return path


_LOADED: dict[tuple, Cohort] = {}


def load_cohort(encoder: str) -> Cohort:
    """The shipped cohort of encoder ``encoder`` (a name in ``MANIFEST``), hash-checked once
    per process unless the file changes; KeyError if none is shipped."""
    if encoder not in MANIFEST:
        raise KeyError(f"no shipped cohort for encoder {encoder!r}; shipped: {sorted(MANIFEST)}")
    path = COHORT_DIR / f"{encoder}.safetensors"
    if not path.is_file():
        raise CohortIntegrityError(f"{path}: shipped cohort file is missing; reinstall lrface")
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, MANIFEST[encoder])
    if key not in _LOADED:
        actual = file_digest(path)
        if actual != MANIFEST[encoder]:
            raise CohortIntegrityError(
                f"{path}: sha256 {actual[:16]}... does not match the pinned "
                f"{MANIFEST[encoder][:16]}... (file changed or damaged); reinstall lrface"
            )
        _LOADED[key] = read_cohort(path, encoder, actual)
    return _LOADED[key]


def stored_cohort(encoder: str) -> Cohort | None:
    """The cohort stored with an encoder: a checkpoint directory's ``cohort.safetensors``
    (written by ``lrface build-cohort --out``), else the shipped, hash-checked one; None if it
    has neither."""
    own = Path(encoder) / "cohort.safetensors"
    if own.is_file():
        return read_cohort(own)
    return load_cohort(encoder) if encoder in MANIFEST else None
