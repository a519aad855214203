"""MTCNN face detector (Zhang, Zhang, Li, Qiao, "Joint Face Detection and Alignment using
Multi-task Cascaded Convolutional Networks", IEEE SPL 2016) in plain PyTorch.

Three cascaded nets: P-Net scans an image pyramid fully convolutionally (a 12 px window, stride
2), R-Net re-scores 24x24 crops of the survivors and O-Net 48x48 crops, each regressing the box;
O-Net also gives five landmarks. Non-maximum suppression between stages. The layer names match
``facenet-pytorch`` so its converted weights load as they are (see ``lrface.detect.weights``).

Images of the same size are run as one batch through every stage. Crops for R-Net/O-Net are
sampled bilinearly (``grid_sample``) from a 2x mip-map of the image, at the level that leaves
at most a 2x reduction, so large faces are not aliased and faces at the border are zero-padded.

The P-Net pyramid (``pyramid``) is built one of two ways:

- ``area``: each scale area-averaged from the full-size float image (``F.interpolate`` mode
  ``area``, i.e. adaptive average pooling), the reference this detector's published figures
  were measured with;
- ``cascade``: each scale resized on uint8 by OpenCV (``INTER_AREA``) from the previous one
  (from the image for the first): 8-11x cheaper at 720p and 1080p, where the ``area`` pyramid
  was more than half of a whole frame's detection time (docs/video.md, "Real footage"); it
  finds the same faces, their boxes and landmarks moved by about 2% of the face's width on
  average (measured there).

Scales where a face is smaller than 12 px (``min_face`` under 12) upsample the image
(``INTER_LINEAR``): an upscaled pass that finds faces down to ``min_face`` px at the cost of a
larger first pyramid level (4x the pixels at ``min_face`` 6). ``max_face`` stops the pyramid
at the scale where P-Net's window covers faces of that size: larger ones are not searched for.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrface.detect import Face
from lrface.detect.weights import load_mtcnn_state

PNET_CELL = 12
PNET_STRIDE = 2
MIN_FACE_FLOOR = 6
"""Smallest ``min_face``: 2x upscaling for a 12 px window (issue 25: the upscaled pass)."""
PYRAMIDS = ("area", "cascade")


class PNet(nn.Module):
    """Proposal net: 12x12 window -> face probability and box offsets, fully convolutional."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``N x 3 x H x W`` -> (face probability ``N x h x w``, offsets ``N x 4 x h x w``)."""
        x = self.prelu1(self.conv1(x))
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


def _flatten_transposed(x: torch.Tensor) -> torch.Tensor:
    """Flatten in (W, H, C) order: the converted Caffe/TF dense weights expect it."""
    return x.permute(0, 3, 2, 1).reshape(len(x), -1)


class RNet(nn.Module):
    """Refine net: 24x24 crop -> face probability and box offsets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_transposed(self.prelu3(self.conv3(x)))))
        return torch.softmax(self.dense5_1(x), dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output net: 48x48 crop -> face probability, box offsets, five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (probability, offsets ``N x 4``, landmarks ``N x 10`` as x1..x5, y1..y5 in [0, 1])."""
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_transposed(self.prelu4(self.conv4(x)))))
        return torch.softmax(self.dense6_1(x), dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


def pyramid_scales(
    height: int,
    width: int,
    min_face: float,
    factor: float = 0.709,
    max_face: float | None = None,
) -> list[float]:
    """Scales at which P-Net's 12 px window covers faces from ``min_face`` px upwards.

    The first scale maps ``min_face`` to 12 px (above 1, an upsampled image, when ``min_face``
    is under 12); each next one multiplies by ``factor`` while the short side of the scaled
    image is still at least 12 px and, with ``max_face``, while the window at the previous
    scale still covered faces smaller than ``max_face`` (the last scale reaches it).
    """
    if min_face < MIN_FACE_FLOOR:
        raise ValueError(f"min_face must be at least {MIN_FACE_FLOOR} px, got {min_face}")
    if not 0 < factor < 1:
        raise ValueError(f"pyramid factor must be in (0, 1), got {factor}")
    if max_face is not None and max_face < min_face:
        raise ValueError(f"max_face ({max_face}) must be at least min_face ({min_face})")
    scales = []
    scale = PNET_CELL / min_face
    while min(height, width) * scale >= PNET_CELL:
        scales.append(scale)
        if max_face is not None and PNET_CELL / scale >= max_face:
            break
        scale *= factor
    return scales


NMS_BLOCK = 512
"""Boxes whose overlaps ``nms`` computes at once: a block's rows against every box left."""


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, highest score first.

    A box is dropped when its overlap with a kept, higher-scoring box exceeds ``threshold``;
    overlap is intersection over union (``union``) or over the smaller area (``min``).
    The overlaps of the next ``NMS_BLOCK`` boxes with every box left are computed as one
    matrix, and the greedy pass walks its rows: the same result as one box at a time, without
    a dozen numpy calls per kept box (a crowd's frame runs this a few thousand times).
    """
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep = []
    while order.size:
        best, rest = order[:NMS_BLOCK, None], order[None]
        inter = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        inter *= np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        if mode == "union":
            denom = areas[best] + areas[rest] - inter
        else:
            denom = np.minimum(areas[best], areas[rest])
        suppresses = inter / np.maximum(denom, 1e-12) > threshold
        alive = np.ones(order.size, bool)
        for row in range(len(best)):
            if alive[row]:
                keep.append(order[row])
                alive &= ~suppresses[row]
        order = order[len(best) :][alive[len(best) :]]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float, mode: str = "union"
) -> np.ndarray:
    """NMS separately within each group (image); indices, highest score first.

    Each group runs on its own boxes, so an image gets the answer it gets alone. (Shifting the
    groups' boxes apart and running one NMS, the usual trick, is not equivalent: P-Net's
    grid windows overlap at exactly the 0.5 threshold, and the shift changes the rounding.)
    """
    groups = np.asarray(groups)
    scores = np.asarray(scores, dtype=np.float64)
    kept = [
        rows[nms(boxes[rows], scores[rows], threshold, mode)]
        for rows in (np.nonzero(groups == g)[0] for g in np.unique(groups))
    ]
    if not kept:
        return np.zeros(0, np.int64)
    keep = np.concatenate(kept)
    return keep[np.argsort(-scores[keep], kind="stable")]


def regress_boxes(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply MTCNN's box regression: each edge moves by its offset times the box width/height."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square of its longer side, about the same centre."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    cx = boxes[:, 0] + w / 2
    cy = boxes[:, 1] + h / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def pnet_boxes(
    prob: np.ndarray, offsets: np.ndarray, scale_x: float, scale_y: float, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """P-Net map cells above ``threshold`` -> (image index, boxes in image px, scores, offsets).

    ``prob`` is ``N x h x w``, ``offsets`` ``N x 4 x h x w``; cell ``(i, j)`` is the 12 px
    window at ``(2j, 2i)`` of the image scaled by ``(scale_x, scale_y)``.
    """
    image, row, col = np.nonzero(prob >= threshold)
    x1 = col * PNET_STRIDE / scale_x
    y1 = row * PNET_STRIDE / scale_y
    boxes = np.stack([x1, y1, x1 + PNET_CELL / scale_x, y1 + PNET_CELL / scale_y], axis=1).reshape(
        -1, 4
    )
    return image, boxes, prob[image, row, col], offsets[image, :, row, col].reshape(-1, 4)


class MTCNN:
    """Detect faces with five landmarks; ``detect(image)`` or ``detect_batch(images)``.

    ``min_face`` is the smallest face side in pixels searched for (>= 6; under 12 the image is
    upsampled for it), ``max_face`` the largest (None: as large as the image); ``thresholds``
    the score cut of P-Net, R-Net and O-Net; ``factor`` the pyramid step; ``pyramid`` how its
    levels are resized (``area`` or ``cascade``, module docstring).
    """

    name = "mtcnn"

    def __init__(
        self,
        min_face: float = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str = "cpu",
        download: bool = True,
        max_face: float | None = None,
        pyramid: str = "area",
    ):
        pyramid_scales(PNET_CELL, PNET_CELL, min_face, factor, max_face)  # validates them
        if pyramid not in PYRAMIDS:
            raise ValueError(f"pyramid must be one of {PYRAMIDS}, got {pyramid!r}")
        self.min_face = min_face
        self.max_face = max_face
        self.thresholds = thresholds
        self.factor = factor
        self.pyramid = pyramid
        self.device = device
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for net, key in ((self.pnet, "pnet"), (self.rnet, "rnet"), (self.onet, "onet")):
            net.load_state_dict(load_mtcnn_state(key, download=download))
            # channels-last: torch's CPU max-pooling of these small maps is much faster in it,
            # which matters most for the small crops of motion-gated detection
            net.to(device, memory_format=torch.channels_last).eval()

    @property
    def settings(self) -> dict:
        """What fixes this detector's output, for cache keys of stored detections.

        ``nms`` marks per-image suppression: detections cached before it depended on the
        batch an image was detected in (``batched_nms``). ``max_face`` and ``pyramid`` appear
        only when not the defaults, so the keys of detections stored before they existed hold.
        """
        settings = {
            "name": self.name,
            "min_face": self.min_face,
            "thresholds": list(self.thresholds),
            "factor": self.factor,
            "nms": "per-image",
        }
        if self.max_face is not None:
            settings["max_face"] = self.max_face
        if self.pyramid != "area":
            settings["pyramid"] = self.pyramid
        return settings

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detect_batch([image])[0]

    @torch.inference_mode()
    def detect_batch(
        self,
        images: list[np.ndarray],
        min_face: float | None = None,
        max_face: float | None = None,
    ) -> list[list[Face]]:
        """Faces per image, highest score first; same-size images share every forward pass.

        ``min_face`` / ``max_face`` narrow the face sizes searched for in this call (the
        pyramid's first and last scales); by default the detector's own."""
        sizes = (min_face or self.min_face, max_face or self.max_face)
        results: list[list[Face]] = [[] for _ in images]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"expected H x W x 3 uint8 RGB images, got {image.shape} {image.dtype}"
                )
            by_shape.setdefault(image.shape, []).append(i)
        for indices in by_shape.values():
            batch = np.stack([images[i] for i in indices])
            for i, faces in zip(indices, self._detect_same_size(batch, *sizes), strict=True):
                results[i] = faces
        return results

    def _detect_same_size(
        self, batch: np.ndarray, min_face: float, max_face: float | None
    ) -> list[list[Face]]:
        n, height, width = batch.shape[:3]
        imgs = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        mips = _mip_levels(imgs)
        empty = [[] for _ in range(n)]

        image, boxes, scores, offsets = self._stage1(batch, imgs, min_face, max_face)
        if not len(boxes):
            return empty
        boxes = square_boxes(regress_boxes(boxes, offsets))

        prob, offsets = self.rnet(_normalize(_crops(mips, image, boxes, 24)))[:2]
        keep = (prob >= self.thresholds[1]).cpu().numpy()
        image, boxes, scores = image[keep], boxes[keep], prob.cpu().numpy()[keep]
        offsets = offsets.cpu().numpy()[keep]
        keep = batched_nms(boxes, scores, image, 0.7)
        image, boxes = image[keep], square_boxes(regress_boxes(boxes[keep], offsets[keep]))
        if not len(boxes):
            return empty

        prob, offsets, points = (
            t.cpu().numpy() for t in self.onet(_normalize(_crops(mips, image, boxes, 48)))
        )
        keep = prob >= self.thresholds[2]
        image, boxes, scores = image[keep], boxes[keep], prob[keep]
        size = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
        landmarks = boxes[:, None, :2] + np.stack([points[keep, :5], points[keep, 5:]], 2) * size
        boxes = regress_boxes(boxes, offsets[keep])
        keep = batched_nms(boxes, scores, image, 0.7, mode="min")

        faces: list[list[Face]] = [[] for _ in range(n)]
        for k in keep:
            faces[image[k]].append(
                Face(boxes[k].astype(np.float32), float(scores[k]), landmarks[k].astype(np.float32))
            )
        return faces

    def _stage1(
        self,
        batch: np.ndarray,
        imgs: torch.Tensor,
        min_face: float | None = None,
        max_face: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """P-Net over the pyramid; NMS per scale (0.5) then across scales (0.7), per image."""
        height, width = batch.shape[1:3]
        parts = []
        sizes = (min_face or self.min_face, max_face or self.max_face)
        for level in self._pyramid(batch, imgs, *sizes):
            prob, offsets = self.pnet(level)
            sh, sw = level.shape[2:]
            found = pnet_boxes(
                prob.cpu().numpy(),
                offsets.cpu().numpy(),
                sw / width,
                sh / height,
                self.thresholds[0],
            )
            keep = batched_nms(found[1], found[2], found[0], 0.5)
            parts.append([part[keep] for part in found])
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4))
        image, boxes, scores, offsets = (np.concatenate(p) for p in zip(*parts, strict=True))
        keep = batched_nms(boxes, scores, image, 0.7)
        return image[keep], boxes[keep], scores[keep], offsets[keep]

    def _pyramid(
        self, batch: np.ndarray, imgs: torch.Tensor, min_face: float, max_face: float | None
    ) -> Iterator[torch.Tensor]:
        """P-Net's input at each scale, normalized: ``N x 3 x h x w``, channels-last.

        ``batch`` is the ``N x H x W x 3`` uint8 images, ``imgs`` the same as float ``N x 3 x H
        x W``; ``area`` resizes ``imgs``, ``cascade`` resizes ``batch`` (module docstring)."""
        height, width = batch.shape[1:3]
        previous, previous_scale = batch, None
        for scale in pyramid_scales(height, width, min_face, self.factor, max_face):
            sh, sw = math.ceil(height * scale), math.ceil(width * scale)
            if self.pyramid == "area":
                mode = "area" if scale <= 1 else "bilinear"
                yield _normalize(F.interpolate(imgs, size=(sh, sw), mode=mode))
                continue
            # each downscaled level comes from the one before (the first, and upsampled
            # levels, from the image)
            downscaled = previous_scale is not None and previous_scale <= 1
            source = previous if downscaled else batch
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            level = source
            if (sh, sw) != source.shape[1:3]:
                level = np.stack(
                    [cv2.resize(im, (sw, sh), interpolation=interpolation) for im in source]
                )
            previous, previous_scale = level, scale
            # N x h x w x 3 viewed as N x 3 x h x w is already channels-last
            yield _normalize(torch.from_numpy(level).to(self.device).permute(0, 3, 1, 2).float())


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 255] -> about [-1, 1], as the nets were trained; channels-last, as the nets are."""
    return ((x - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def _mip_levels(imgs: torch.Tensor, smallest: int = 24) -> list[torch.Tensor]:
    """The batch and its successive 2x2 average halvings (an odd last row or column dropped),
    down to ``smallest`` px.

    ``imgs`` is ``N x 3 x H x W`` float of integer values, channels-last (as ``detect_batch``
    makes it): each halving is OpenCV's ``INTER_AREA`` at exactly half, 4x faster than
    ``F.avg_pool2d`` and the same numbers, since means of 4 such values are exact in float."""
    levels = [imgs]
    level = imgs.permute(0, 2, 3, 1).cpu().numpy()  # N x H x W x 3
    while min(level.shape[1:3]) >= 2 * smallest:
        h, w = level.shape[1] // 2, level.shape[2] // 2
        level = np.stack(
            [cv2.resize(im[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA) for im in level]
        )
        levels.append(torch.from_numpy(level).to(imgs.device).permute(0, 3, 1, 2))
    return levels


def _crops(
    mips: list[torch.Tensor], image: np.ndarray, boxes: np.ndarray, size: int
) -> torch.Tensor:
    """``size x size`` bilinear crops of ``boxes`` (image px) from image ``image[k]``.

    Each box is sampled from the coarsest mip level where it still spans ``size`` pixels, so the
    bilinear step shrinks by less than 2x; outside the image reads as black.
    """
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    level = np.clip(np.floor(np.log2(np.maximum(side, 1e-6) / size)), 0, len(mips) - 1).astype(int)
    out = torch.empty((len(boxes), 3, size, size), device=mips[0].device)
    steps = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    for img_idx, lvl in sorted(set(zip(image.tolist(), level.tolist(), strict=True))):
        rows = np.nonzero((image == img_idx) & (level == lvl))[0]
        src = mips[lvl][img_idx : img_idx + 1]
        lh, lw = src.shape[2:]
        f = 2.0**lvl
        b = torch.from_numpy(boxes[rows])
        xs = b[:, 0:1] + steps * (b[:, 2:3] - b[:, 0:1])  # n x size, image px
        ys = b[:, 1:2] + steps * (b[:, 3:4] - b[:, 1:2])
        gx = (2 * xs / (f * lw) - 1).unsqueeze(1).expand(-1, size, -1)
        gy = (2 * ys / (f * lh) - 1).unsqueeze(2).expand(-1, -1, size)
        grid = torch.stack([gx, gy], dim=-1).reshape(1, len(rows) * size, size, 2)
        sampled = F.grid_sample(
            src, grid.to(src), mode="bilinear", padding_mode="zeros", align_corners=False
        )
        out[torch.from_numpy(rows)] = sampled.reshape(3, len(rows), size, size).transpose(0, 1)
    return out
