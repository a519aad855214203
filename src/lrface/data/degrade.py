"""Every way lrface makes a face low-resolution, in one place.

* ``EvalDegradation``: deterministic. The aligned 150x150 chip is downsampled to ``s x s`` with a
  named anti-aliased kernel (default PIL ``area`` = box filter over the source pixels). The
  encoder then brings the ``s x s`` image up to its own input size with its own named kernel
  (the teacher: bicubic to 150x150).
* ``TrainDegradation``: random. Size drawn from a range, random down/up kernels, optional
  Gaussian blur before downsampling, Gaussian noise and JPEG compression at the low resolution,
  and optionally colour jitter and a random occluding rectangle (random erasing).

Geometry: in lrface's chip (dlib ``get_face_chip``, 150 px, padding 0.25) the eye centres are
``EYE_DISTANCE_AT_150`` px apart (measured with dlib's 5-point model, see
``docs/results.md``), so an ``s``-px chip has an inter-eye distance of ``s * 49.5 / 150``
(8 px -> 2.6, 16 px -> 5.3, 32 px -> 10.6).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

EYE_DISTANCE_AT_150 = 49.5
CHIP_SIZE = 150

KERNELS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


def inter_eye_distance(size: int, chip_size: int = CHIP_SIZE) -> float:
    """Inter-eye distance in pixels of a chip downsampled to ``size``."""
    return size * EYE_DISTANCE_AT_150 / chip_size


def _kernel(name: str) -> Image.Resampling:
    if name not in KERNELS:
        raise ValueError(f"unknown resize kernel {name!r}; choose one of {sorted(KERNELS)}")
    return KERNELS[name]


def resize_chip(chip: np.ndarray, size: int, kernel: str) -> np.ndarray:
    """Resize one ``H x W x 3`` uint8 chip to ``size x size`` (PIL, anti-aliased when shrinking)."""
    if chip.shape[0] == size and chip.shape[1] == size:
        return chip
    return np.asarray(Image.fromarray(chip).resize((size, size), _kernel(kernel)))


def resize_chips(chips: np.ndarray, size: int, kernel: str) -> np.ndarray:
    """Resize a ``N x H x W x 3`` batch; returned as is when already ``size``."""
    if chips.ndim != 4 or chips.shape[-1] != 3:
        raise ValueError(f"expected chips of shape N x H x W x 3, got {chips.shape}")
    if chips.shape[1] == size and chips.shape[2] == size:
        return chips
    out = np.empty((len(chips), size, size, 3), np.uint8)
    for i, chip in enumerate(chips):
        out[i] = resize_chip(chip, size, kernel)
    return out


@dataclass(frozen=True)
class EvalDegradation:
    """Deterministic downsampling of aligned chips to ``size x size`` (None = full resolution)."""

    size: int | None = None
    kernel: str = "area"

    @property
    def key(self) -> str:
        return "hr" if self.size is None else f"s{self.size}-{self.kernel}"

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        if self.size is None:
            return chips
        return resize_chips(chips, self.size, self.kernel)


@dataclass
class TrainDegradation:
    """Random degradation for training: returns an ``s x s`` chip with ``s`` drawn per call.

    Blur (sigma in HR pixels) is applied before downsampling, noise (std in grey levels) and
    JPEG (quality) after, each with its probability. Jitter (off by default) first moves the
    HR chip by a random similarity transform: shift up to ``jitter_shift`` of the chip side,
    scale within ``1 +- jitter_scale``, rotation up to ``jitter_degrees``; it teaches the
    student the alignment noise of a detector's landmarks (e.g. MTCNN on a tiny face).
    Erasing (off by default; Zhong et al., AAAI 2020) fills a random rectangle of the LR face,
    ``erase_area`` of its area with aspect ratio in 0.3-3.3, with random grey levels: the
    student must embed the whole face from part of it (occlusion, and less memorization).
    Colour jitter (off by default) scales brightness, contrast and saturation of the LR face
    by factors drawn from ``1 +- color_strength`` each: another photo's lighting and camera,
    under which the teacher's embedding (the target) barely moves.
    """

    min_size: int = 8
    max_size: int = 32
    kernels: list[str] = field(default_factory=lambda: ["area", "bilinear", "bicubic", "lanczos"])
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    noise_prob: float = 0.3
    noise_std: tuple[float, float] = (1.0, 8.0)
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 95)
    jitter_shift: float = 0.0
    jitter_scale: float = 0.0
    jitter_degrees: float = 0.0
    erase_prob: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.2)
    color_prob: float = 0.0
    color_strength: float = 0.3

    def __post_init__(self) -> None:
        low, high = self.erase_area
        if not 0.0 <= self.erase_prob <= 1.0 or not 0.0 < low <= high <= 1.0:
            raise ValueError(
                f"erase_prob must be in [0, 1] and erase_area a range within (0, 1], got "
                f"{self.erase_prob} and {self.erase_area}"
            )
        if not 0.0 <= self.color_prob <= 1.0 or not 0.0 <= self.color_strength < 1.0:
            raise ValueError(
                f"color_prob must be in [0, 1] and color_strength in [0, 1), got "
                f"{self.color_prob} and {self.color_strength}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    def sample_size(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.min_size, self.max_size + 1))

    def __call__(
        self, chip: np.ndarray, rng: np.random.Generator, size: int | None = None
    ) -> np.ndarray:
        size = self.sample_size(rng) if size is None else size
        img = Image.fromarray(chip)
        if self.jitter_shift or self.jitter_scale or self.jitter_degrees:
            img = similarity_jitter(
                img, rng, self.jitter_shift, self.jitter_scale, self.jitter_degrees
            )
        if rng.random() < self.blur_prob:
            img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(*self.blur_sigma))))
        kernel = self.kernels[int(rng.integers(len(self.kernels)))]
        img = img.resize((size, size), _kernel(kernel))
        if self.color_prob and rng.random() < self.color_prob:
            img = color_jitter(img, rng, self.color_strength)
        out = np.asarray(img)
        if rng.random() < self.noise_prob:
            noise = rng.normal(0.0, rng.uniform(*self.noise_std), out.shape)
            out = np.clip(out + noise, 0, 255).astype(np.uint8)
        if rng.random() < self.jpeg_prob:
            buffer = io.BytesIO()
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            Image.fromarray(out).save(buffer, format="JPEG", quality=quality)
            out = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        if self.erase_prob and rng.random() < self.erase_prob:
            out = random_erase(out, rng, self.erase_area)
        return out


def color_jitter(img: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Brightness, contrast and saturation, each scaled by a factor in ``1 +- strength``."""
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(float(rng.uniform(1 - strength, 1 + strength)))
    return img


def random_erase(
    image: np.ndarray, rng: np.random.Generator, area: tuple[float, float]
) -> np.ndarray:
    """A copy of ``image`` with one random rectangle (``area`` of the image, aspect ratio
    0.3-3.3, clipped to the image) filled with uniform random grey levels."""
    height, width = image.shape[:2]
    target = rng.uniform(*area) * height * width
    aspect = np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3)))
    h = int(np.clip(round(np.sqrt(target * aspect)), 1, height))
    w = int(np.clip(round(np.sqrt(target / aspect)), 1, width))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    out = image.copy()
    out[top : top + h, left : left + w] = rng.integers(0, 256, (h, w, image.shape[2]))
    return out


def similarity_jitter(
    img: Image.Image, rng: np.random.Generator, shift: float, scale: float, degrees: float
) -> Image.Image:
    """A random similarity transform about the chip centre (edges filled black): shift up to
    ``shift`` of the side, scale within ``1 +- scale``, rotation up to ``degrees``."""
    side = img.size[0]
    shift_x, shift_y = rng.uniform(-shift, shift, 2) * side
    factor = 1.0 + rng.uniform(-scale, scale)
    angle = np.deg2rad(rng.uniform(-degrees, degrees))
    # PIL maps each output pixel to its source: src = R(-angle) (out - c - t) / factor + c.
    cos, sin = np.cos(angle) / factor, np.sin(angle) / factor
    centre = (side - 1) / 2
    ox, oy = centre + shift_x, centre + shift_y
    coeffs = (cos, sin, centre - cos * ox - sin * oy, -sin, cos, centre + sin * ox - cos * oy)
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC)
