"""Every way lrface makes a face low-resolution, in one place.

* ``EvalDegradation``: deterministic. The aligned 150x150 chip is downsampled to ``s x s`` with a
  named anti-aliased kernel (default PIL ``area`` = box filter over the source pixels). The
  encoder then brings the ``s x s`` image up to its own input size with its own named kernel
  (the teacher: bicubic to 150x150). With a camera preset (``PRESETS``: ``cctv``, ``ir``) the
  chip also passes through that preset's camera effects, drawn per image from an RNG seeded by
  the image's key (sha1 of its file), the size and the preset's seed: every encoder sees the
  same degraded probes, and a subset of images gets the same pixels as the whole set.
* ``CameraPreset``: the realistic evaluation conditions, each defined here and only here.
  ``cctv``: motion blur (p 0.6, 4-12 HR px long, any direction) and/or defocus blur (p 0.6,
  disk of radius 1.5-4 HR px), gamma 0.6-1.6 and contrast x0.6-1.0, then at the low
  resolution Gaussian sensor noise (std 3-10 grey levels) and JPEG quality 20-50, always.
  ``ir``: grey-scale (night infra-red), one-sided lighting (brightness falls linearly by
  55-85% across the face from a side drawn at random, within 30 degrees of horizontal), gamma
  0.8-1.4, then noise (std 2-6) and JPEG quality 50-90.
* ``TrainDegradation``: random. Size drawn from a range, random down/up kernels, optional
  Gaussian blur before downsampling, Gaussian noise and JPEG compression at the low resolution,
  and optionally colour jitter, a random occluding rectangle (random erasing) and the camera
  effects of the presets (motion and defocus blur, grey-scale, one-sided lighting, gamma) with
  ranges of its own, set wider than the presets' so that they are not learned by heart.

Geometry (``lrface.constants``): an ``s``-px chip has an inter-eye distance of
``s * 49.5 / 150`` (8 px -> 2.6, 16 px -> 5.3, 32 px -> 10.6).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from lrface.constants import CHIP_SIZE, EYE_DISTANCE_AT_150
from lrface.resize import kernel_filter, resize_chip, resize_chips


def inter_eye_distance(size: int, chip_size: int = CHIP_SIZE) -> float:
    """Inter-eye distance in pixels of a chip downsampled to ``size``."""
    return size * EYE_DISTANCE_AT_150 / chip_size


def motion_blur(image: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Linear motion blur: a line kernel ``length`` px long at ``angle`` degrees."""
    size = max(3, int(np.ceil(length)) | 1)
    kernel = np.zeros((size, size), np.float32)
    centre = (size - 1) / 2
    dx, dy = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    half = (length - 1) / 2
    for t in np.linspace(-half, half, max(2, int(round(length)) * 2)):
        kernel[int(round(centre + t * dy)), int(round(centre + t * dx))] = 1.0
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def defocus_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Out-of-focus blur: a uniform disk kernel of ``radius`` px."""
    size = 2 * int(np.ceil(radius)) + 1
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    kernel = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grey-scale (ITU-R 601 luma) in three identical channels, as an IR camera gives."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[..., None], 3, axis=2)


def one_sided_light(image: np.ndarray, strength: float, angle: float) -> np.ndarray:
    """Brightness falling linearly by ``strength`` across the image, lit from ``angle`` degrees
    (0 = from the left)."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    dx, dy = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    along = (xx - (width - 1) / 2) * dx + (yy - (height - 1) / 2) * dy
    extent = max(float(np.abs(along).max()), 1.0)
    gain = 1.0 - strength * (along / extent + 1.0) / 2.0
    return np.clip(image * gain[..., None], 0, 255).astype(np.uint8)


def gamma_contrast(image: np.ndarray, gamma: float, contrast: float) -> np.ndarray:
    """``255 * (x / 255) ** gamma``, then contrast scaled by ``contrast`` about the mean."""
    out = 255.0 * (image.astype(np.float32) / 255.0) ** gamma
    mean = out.mean()
    return np.clip((out - mean) * contrast + mean, 0, 255).astype(np.uint8)


def add_noise(
    image: np.ndarray, std: float, rng: np.random.Generator, grey: bool = False
) -> np.ndarray:
    """Gaussian sensor noise of ``std`` grey levels (``grey``: one value for all channels)."""
    shape = (*image.shape[:2], 1) if grey else image.shape
    return np.clip(image + rng.normal(0.0, std, shape), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after a JPEG round trip at ``quality``."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


@dataclass(frozen=True)
class CameraPreset:
    """Named realistic conditions of a probe; see the module docstring for the two presets.

    Effects on the HR chip (in this order): motion blur, defocus blur, grey-scale, one-sided
    light, gamma/contrast; then the downsampling; then noise and JPEG at the low resolution.
    Ranges are ``(low, high)`` drawn uniformly; a ``*_prob`` of 0 turns an effect off.
    """

    name: str
    motion_blur_prob: float = 0.0
    motion_blur_length: tuple[float, float] = (4.0, 12.0)
    defocus_prob: float = 0.0
    defocus_radius: tuple[float, float] = (1.5, 4.0)
    gray: bool = False
    light_prob: float = 0.0
    light_strength: tuple[float, float] = (0.55, 0.85)
    light_max_tilt: float = 30.0
    gamma: tuple[float, float] = (1.0, 1.0)
    contrast: tuple[float, float] = (1.0, 1.0)
    noise_std: tuple[float, float] = (0.0, 0.0)
    jpeg_quality: tuple[int, int] | None = None
    version: int = 1

    def hr_effects(self, chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = chip
        if rng.random() < self.motion_blur_prob:
            out = motion_blur(out, rng.uniform(*self.motion_blur_length), rng.uniform(0, 180))
        if rng.random() < self.defocus_prob:
            out = defocus_blur(out, rng.uniform(*self.defocus_radius))
        if self.gray:
            out = to_gray(out)
        if rng.random() < self.light_prob:
            side = 180.0 * int(rng.integers(2))
            tilt = rng.uniform(-self.light_max_tilt, self.light_max_tilt)
            out = one_sided_light(out, rng.uniform(*self.light_strength), side + tilt)
        return gamma_contrast(out, rng.uniform(*self.gamma), rng.uniform(*self.contrast))

    def lr_effects(self, small: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = add_noise(small, rng.uniform(*self.noise_std), rng, grey=self.gray)
        if self.jpeg_quality is not None:
            out = jpeg(out, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        return to_gray(out) if self.gray else out  # a grey camera has no chroma artefacts


PRESETS: dict[str, CameraPreset | None] = {
    "clean": None,
    "cctv": CameraPreset(
        "cctv",
        motion_blur_prob=0.6,
        defocus_prob=0.6,
        gamma=(0.6, 1.6),
        contrast=(0.6, 1.0),
        noise_std=(3.0, 10.0),
        jpeg_quality=(20, 50),
    ),
    "ir": CameraPreset(
        "ir",
        gray=True,
        light_prob=1.0,
        gamma=(0.8, 1.4),
        noise_std=(2.0, 6.0),
        jpeg_quality=(50, 90),
    ),
}
"""Evaluation conditions by name (``lrface benchmark --degradation``)."""


def camera_preset(name: str) -> CameraPreset | None:
    """The preset called ``name`` (None for ``clean``); ValueError naming the choices."""
    if name not in PRESETS:
        raise ValueError(f"unknown degradation {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class EvalDegradation:
    """Deterministic downsampling of aligned chips to ``size x size`` (None = full resolution),
    through the camera preset ``preset`` (``clean``: none) seeded by ``seed``.

    A preset draws its effects per image from the image's key, so ``keys`` (the chips' sha1
    hex strings, ``ChipSet.keys``) must be given with it. Full resolution is never degraded:
    presets describe the probe camera, and the HR side is the enrolled photo.
    """

    size: int | None = None
    kernel: str = "area"
    preset: str = "clean"
    seed: int = 0

    def __post_init__(self) -> None:
        camera_preset(self.preset)

    @property
    def key(self) -> str:
        if self.size is None:
            return "hr"
        base = f"s{self.size}-{self.kernel}"
        camera = PRESETS[self.preset]
        if camera is None:
            return base
        return f"{base}-{camera.name}-v{camera.version}-seed{self.seed}"

    def __call__(self, chips: np.ndarray, keys: list[str] | None = None) -> np.ndarray:
        if self.size is None:
            return chips
        camera = PRESETS[self.preset]
        if camera is None:
            return resize_chips(chips, self.size, self.kernel)
        if keys is None or len(keys) != len(chips):
            raise ValueError(f"the {self.preset!r} preset needs one image key per chip")
        out = np.empty((len(chips), self.size, self.size, 3), np.uint8)
        for i, (chip, key) in enumerate(zip(chips, keys, strict=True)):
            rng = np.random.default_rng((self.seed, int(key[:15], 16), self.size))
            small = resize_chip(camera.hr_effects(chip, rng), self.size, self.kernel)
            out[i] = camera.lr_effects(small, rng)
        return out


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
    under which the teacher's embedding (the target) barely moves. Camera effects (off by
    default; the operations of ``CameraPreset``, applied to the HR chip before downsampling):
    motion blur, defocus blur, grey-scale, one-sided light (strength in ``light_strength``, from
    any direction) and gamma, each with its probability. ``clean_prob`` (0 by default): that
    share of the faces gets no effect at all, only the random-kernel resize, so a recipe can
    keep the clean benchmark's condition in its mix however strong its effects are.
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
    motion_blur_prob: float = 0.0
    motion_blur_length: tuple[float, float] = (2.0, 16.0)
    defocus_prob: float = 0.0
    defocus_radius: tuple[float, float] = (1.0, 5.0)
    gray_prob: float = 0.0
    light_prob: float = 0.0
    light_strength: tuple[float, float] = (0.3, 0.9)
    gamma_prob: float = 0.0
    gamma_range: tuple[float, float] = (0.5, 2.0)
    clean_prob: float = 0.0

    def __post_init__(self) -> None:
        probs = (
            "motion_blur_prob",
            "defocus_prob",
            "gray_prob",
            "light_prob",
            "gamma_prob",
            "clean_prob",
        )
        for name in probs:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
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

    @property
    def has_camera_effects(self) -> bool:
        return any(
            (
                self.motion_blur_prob,
                self.defocus_prob,
                self.gray_prob,
                self.light_prob,
                self.gamma_prob,
            )
        )

    def sample_size(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.min_size, self.max_size + 1))

    def __call__(
        self, chip: np.ndarray, rng: np.random.Generator, size: int | None = None
    ) -> np.ndarray:
        size = self.sample_size(rng) if size is None else size
        if self.clean_prob and rng.random() < self.clean_prob:
            kernel = self.kernels[int(rng.integers(len(self.kernels)))]
            return resize_chip(chip, size, kernel)
        img = Image.fromarray(chip)
        if self.jitter_shift or self.jitter_scale or self.jitter_degrees:
            img = similarity_jitter(
                img, rng, self.jitter_shift, self.jitter_scale, self.jitter_degrees
            )
        if rng.random() < self.blur_prob:
            img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(*self.blur_sigma))))
        if self.has_camera_effects:
            img = Image.fromarray(_camera_effects(self, np.asarray(img), rng))
        kernel = self.kernels[int(rng.integers(len(self.kernels)))]
        img = img.resize((size, size), kernel_filter(kernel))
        if self.color_prob and rng.random() < self.color_prob:
            img = color_jitter(img, rng, self.color_strength)
        out = np.asarray(img)
        if rng.random() < self.noise_prob:
            out = add_noise(out, rng.uniform(*self.noise_std), rng)
        if rng.random() < self.jpeg_prob:
            out = jpeg(out, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        if self.erase_prob and rng.random() < self.erase_prob:
            out = random_erase(out, rng, self.erase_area)
        return out


def _camera_effects(
    degradation: TrainDegradation, chip: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The camera effects of a ``TrainDegradation`` on an HR chip; draws from ``rng`` only for
    the effects that are on, so configs without them keep their exact batches."""
    out = chip
    if degradation.motion_blur_prob and rng.random() < degradation.motion_blur_prob:
        out = motion_blur(out, rng.uniform(*degradation.motion_blur_length), rng.uniform(0, 180))
    if degradation.defocus_prob and rng.random() < degradation.defocus_prob:
        out = defocus_blur(out, rng.uniform(*degradation.defocus_radius))
    if degradation.gray_prob and rng.random() < degradation.gray_prob:
        out = to_gray(out)
    if degradation.light_prob and rng.random() < degradation.light_prob:
        out = one_sided_light(out, rng.uniform(*degradation.light_strength), rng.uniform(0, 360))
    if degradation.gamma_prob and rng.random() < degradation.gamma_prob:
        low, high = np.log(degradation.gamma_range[0]), np.log(degradation.gamma_range[1])
        out = gamma_contrast(out, float(np.exp(rng.uniform(low, high))), 1.0)
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
