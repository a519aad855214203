"""Students trained by this project and shipped inside the package, loaded by name.

Each lives in ``models/pretrained/<name>/`` as ``student.safetensors`` (weights, stored in
float16 to halve the package; loaded into float32), ``student.json`` (how to rebuild it) and
``calibration.json`` (its decision thresholds per protocol and probe size, measured on LFW
people it never saw). ``MANIFEST`` pins the sha256 of every file: a file that does not match
is refused with a message naming it, so no edited or truncated weights are ever run.
Nothing is downloaded: the files come with the package.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from lrface.constants import DEFAULT_STUDENT as DEFAULT_STUDENT  # re-exported
from lrface.paths import file_digest

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"

FILES = ("student.safetensors", "student.json", "calibration.json")

MANIFEST: dict[str, dict[str, str]] = {
    # teacher-init student, configs/lrface-lr-v1.yaml (UTKFace minus its LFW matches, and the
    # LFW people in no View 2 pair); figures in docs/lrface-lr-v1.md
    "lrface-lr-v1": {
        "student.safetensors": "5c2eb186aa19f719bab00f4aa353af48d70216ff5c8442fc5cef459bf92da09e",
        "student.json": "a84e52081ec95d7342c2a627cf56638daa8a3978ff2dd4445971827b23bdcaf4",
        "calibration.json": "1d61797fba35fe60dee1131e5c42f3d93b3991de626a224a1b53c7a8f92bd4ea",
    },
    # lrface-lr-v1 trained further on 8-20 px (configs/lrface-lr-v2.yaml), packaged with
    # --fuse-teacher --size-cutoff 20: the unit mean of its and the teacher's embeddings, for
    # faces under 20 px; figures in docs/lrface-lr-v2.md
    "lrface-lr-v2": {
        "student.safetensors": "66074d43a06b8345302587528d2b955b46322a7116bf83021758445f95f1e183",
        "student.json": "f3a982156e4d572d680bef6425d173a7e9cc47b57f10ebbfa55960266c1f4c45",
        "calibration.json": "61b57d2d829bd00f3b23e847909a182a5b72cd52ccfeefa476ff5c858b7beaa4",
    },
}
"""``{name: {file: sha256}}`` of every shipped student."""


class PretrainedIntegrityError(RuntimeError):
    """A shipped model file is missing or does not match its pinned hash."""


def list_pretrained() -> list[str]:
    return sorted(MANIFEST)


_VERIFIED: set[tuple] = set()
"""(path, size, mtime, inode, pinned hash) of shipped files already hashed in this process: a
pipeline built again does not hash 11 MB again, while a file that changed is checked anew."""


def pretrained_dir(name: str) -> Path:
    """The checked directory of shipped student ``name``."""
    if name not in MANIFEST:
        raise KeyError(f"no shipped student {name!r}; shipped: {list_pretrained()}")
    directory = PRETRAINED_DIR / name
    for file, expected in MANIFEST[name].items():
        path = directory / file
        if not path.is_file():
            raise PretrainedIntegrityError(
                f"{path}: shipped model file is missing; reinstall lrface"
            )
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, expected)
        if key in _VERIFIED:
            continue
        actual = file_digest(path)
        if actual != expected:
            raise PretrainedIntegrityError(
                f"{path}: sha256 {actual[:16]}... does not match the pinned {expected[:16]}... "
                "(file changed or damaged); reinstall lrface"
            )
        _VERIFIED.add(key)
    return directory


def load_pretrained(name: str, batch_size: int = 64, device: str = "cpu", fold: bool = True):
    """Shipped student ``name`` as a ``FaceEncoder`` (hash-checked; named ``name``; ``fold``:
    see ``load_student_encoder``)."""
    from lrface.models.checkpoint import load_student_encoder

    encoder = load_student_encoder(pretrained_dir(name), batch_size, device, fold)
    encoder.name = name
    return encoder


def register_pretrained() -> None:
    """Make every shipped student an encoder name (``create_encoder("lrface-lr-v1")``)."""
    from lrface.models.registry import register_encoder

    for name in MANIFEST:
        register_encoder(name)(partial(load_pretrained, name))


def package_student(
    checkpoint: str | Path,
    out: str | Path,
    fuse_teacher: bool = False,
    size_cutoff: float | None = None,
) -> Path:
    """Write a trained student checkpoint as a shippable directory ``out``: its weights rounded
    to float16 once, here, and its ``student.json``. Every figure of a shipped student is then
    measured on these files (``lrface benchmark --encoder OUT`` also stores its
    ``calibration.json`` there); ``manifest`` pins them.

    ``fuse_teacher``: the packaged encoder averages the student's and the teacher's unit
    embeddings (``models.checkpoint.load_student``); required for a student trained that way
    (``TrainConfig.fuse_teacher``). ``size_cutoff``: the face width below which
    pipelines route faces to it when the user sets none, chosen from its measurements."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from lrface.paths import readable_by_umask

    checkpoint, out = Path(checkpoint), Path(out)
    tensors = load_file(str(checkpoint / "student.safetensors"))
    half = {
        key: value.half().contiguous() if value.is_floating_point() else value.contiguous()
        for key, value in tensors.items()
    }
    if not all(torch.isfinite(v.float()).all() for v in half.values() if v.is_floating_point()):
        raise ValueError(f"{checkpoint}: weights overflow float16")
    out.mkdir(parents=True, exist_ok=True)
    save_file(half, str(out / "student.safetensors"))
    readable_by_umask(out / "student.safetensors")
    info = json.loads((checkpoint / "student.json").read_text())
    if info.get("trained_fused") and not fuse_teacher:
        raise ValueError(
            f"{checkpoint}: the student was trained fused with the teacher (fuse_teacher: true); "
            "alone it is not the encoder it learnt to be: package it with --fuse-teacher"
        )
    if fuse_teacher:
        info["fuse_teacher"] = True
    if size_cutoff is not None:
        info["size_cutoff"] = size_cutoff
    (out / "student.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def manifest(directory: str | Path) -> dict[str, str]:
    """``{file: sha256}`` of a packaged student's files, for ``MANIFEST``."""
    return {name: file_digest(Path(directory) / name) for name in FILES}
