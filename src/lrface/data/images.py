"""Safe image loading: every failure names the file and what is wrong with it."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 64_000_000
"""Images above this many pixels are refused (decompression-bomb guard)."""


class BadImageError(ValueError):
    """An input image that cannot be used; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 RGB array.

    Grayscale, palette, CMYK, RGBA (alpha dropped over black) and 16-bit images are converted.
    Missing, empty, truncated, non-image and oversized files raise BadImageError.
    """
    path = Path(path)
    if path.is_dir():
        raise BadImageError(path, "is a directory, not an image file")
    if not path.is_file():
        raise BadImageError(path, "no such file")
    if path.stat().st_size == 0:
        raise BadImageError(path, "empty file")
    return _decode(path, path, MAX_PIXELS)[0]


def decode_rgb(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``load_rgb`` for bytes already in memory (an upload): the content is decoded, whatever
    ``name`` says; ``name`` only labels the errors."""
    if not data:
        raise BadImageError(name, "empty file")
    return _decode(io.BytesIO(data), name, max_pixels)[0]


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) an image file declares in its header, read without decoding it; None
    when the bytes are not an image PIL recognises."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - any unreadable header means: not sized
        return None


def fit_pixels(width: int, height: int, pixels: int) -> tuple[int, int] | None:
    """(width, height) scaled down, aspect kept, to at most ``pixels``; None if within them."""
    if width * height <= pixels:
        return None
    factor = (width * height / pixels) ** 0.5
    return max(1, int(width / factor)), max(1, int(height / factor))


def decode_bounded(
    data: bytes, name: str, max_pixels: int, work_pixels: int
) -> tuple[np.ndarray, float]:
    """``decode_rgb`` within a budget: refused by its declared size (header) above
    ``max_pixels`` before any pixel is decoded, and brought down to at most ``work_pixels``
    (JPEG: during decoding, by DCT scaling; other formats: right after), so memory and the
    detector's time stay bounded whatever the upload. (image, scale): ``scale`` multiplies
    coordinates in the image returned into the original's (1.0 when not reduced)."""
    if not data:
        raise BadImageError(name, "empty file")
    return _decode(io.BytesIO(data), name, max_pixels, work_pixels)


def _decode(
    source, name: str | os.PathLike, max_pixels: int, work_pixels: int | None = None
) -> tuple[np.ndarray, float]:
    """(RGB image, scale) of ``source`` (a path or a file object); see ``decode_bounded``."""
    try:
        # PIL warns of a "decompression bomb" before our own size check can speak: make its
        # warning an error, answered below with the same message as our limit
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise BadImageError(
                    name, f"image too large ({width}x{height} > {max_pixels} pixels)"
                )
            target = None if work_pixels is None else fit_pixels(width, height, work_pixels)
            if target is not None and img.format == "JPEG":
                img.draft("RGB", target)  # decodes at 1/2, 1/4 or 1/8 scale, >= target
            img.load()
            rgb = _to_rgb(img)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(name, "not an image file (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(name, f"image too large (more than {max_pixels} pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(name, f"corrupt or truncated image ({exc})") from None
    if target is not None and rgb.shape[0] * rgb.shape[1] > work_pixels:
        rgb = np.asarray(Image.fromarray(rgb).resize(target, Image.Resampling.BOX))
    return np.ascontiguousarray(rgb), width / rgb.shape[1]


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = arr.max() if arr.size and arr.max() > 0 else 1.0
        scale = 65535.0 if peak > 255 else 255.0
        gray = np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))
