"""dlib's face recognition ResNet (``anet_type`` of dlib's dnn_face_recognition_ex.cpp) in PyTorch.

Weights are read from ``dlib_face_recognition_resnet_model_v1.dat`` by ``dlib_format`` (no dlib at
run time). The network, input side first, exactly as dlib defines and runs it:

* input_rgb_image_sized<150>: ``(pixel - mean) / 256`` per channel, mean read from the file;
* con<32,7,7,2,2> (no padding: dlib pads only stride-1 convs, by ``k/2``), affine, relu,
  max_pool<3,3,2,2> (no padding); 150 -> 72 -> 35;
* ``ares<N>``: relu(x + affine(con3x3(relu(affine(con3x3(x)))))), both convs stride 1, pad 1;
* ``ares_down<N>``: the first conv has stride 2 and no padding; the shortcut is
  avg_pool<2,2,2,2> (no padding) of x; add_prev adds tensors of different shapes by zero
  padding both to the larger channel count and spatial size (top-left aligned) - this happens
  for real: 8x8 -> block 3x3 vs shortcut 4x4, then 4x4 -> block 1x1 vs shortcut 2x2;
* widths: 3 x ares<32>; ares_down<64> + 3 ares<64>; ares_down<128> + 2 ares<128>;
  ares_down<256> + 2 ares<256> + ares_down<256>; global average pool; fc<128> without bias.

``affine`` is dlib's inference form of batch norm (a per-channel scale and shift).
"""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrface.models.dlib_format import DlibFormatError, DlibLayer, read_dlib_net
from lrface.models.dlib_teacher import RECOGNITION_MODEL, model_file
from lrface.models.encoder import TorchEncoder
from lrface.models.registry import register_encoder
from lrface.paths import file_digest

INPUT_SIZE = 150
EMBEDDING_DIM = 128
# (width, blocks) per width group, input side first; True marks an ares_down block.
STAGES: tuple[tuple[int, tuple[bool, ...]], ...] = (
    (32, (False, False, False)),
    (64, (True, False, False, False)),
    (128, (True, False, False)),
    (256, (True, False, False, True)),
)


class Affine(nn.Module):
    """dlib's ``affine`` layer in CONV_MODE: ``x * gamma[c] + beta[c]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: sum after zero padding both to the larger C, H and W (top-left aligned)."""
    if a.shape[1:] == b.shape[1:]:
        return a + b
    size = tuple(max(m, n) for m, n in zip(a.shape[1:], b.shape[1:], strict=True))
    return _pad_to(a, size) + _pad_to(b, size)


def _pad_to(t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Zero pad ``N x C x H x W`` at the end of C, H and W up to ``size = (C', H', W')``."""
    channels, height, width = size
    return F.pad(t, (0, width - t.shape[3], 0, height - t.shape[2], 0, channels - t.shape[1]))


class ResidualBlock(nn.Module):
    """``ares<N>`` (identity shortcut) or ``ares_down<N>`` (stride 2, avg-pooled shortcut)."""

    def __init__(self, in_channels: int, channels: int, down: bool):
        super().__init__()
        self.down = down
        stride, padding = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=padding)
        self.bn1 = Affine(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.bn2 = Affine(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(padded_add(y, shortcut))


class DlibResNet(nn.Module):
    """dlib's 29-conv face ResNet: float RGB ``N x 3 x 150 x 150`` in [0, 255] -> raw ``N x 128``.

    The embedding is not normalized (neither is dlib's descriptor); compare by cosine.
    """

    def __init__(self, mean: tuple[float, float, float] = (122.782, 117.001, 104.298)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.bn1 = Affine(32)
        stages = []
        in_channels = 32
        for width, downs in STAGES:
            stages.append(
                nn.Sequential(
                    *(
                        ResidualBlock(in_channels if i == 0 else width, width, down)
                        for i, down in enumerate(downs)
                    )
                )
            )
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(256, EMBEDDING_DIM, bias=False)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Embeddings; with ``return_features`` also each width stage's output (32/64/128/256
        channels at 35x35, 17x17, 8x8 and 2x2 for 150x150 input), for feature transfer."""
        x = (x - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        embedding = self.fc(x.mean(dim=(2, 3)))
        return (embedding, features) if return_features else embedding


def fuse_for_inference(model: DlibResNet) -> DlibResNet:
    """A copy for fast inference: each affine folded into the conv before it, channels_last.

    Same function up to float rounding (max |diff| 6e-7 vs dlib on 500 LFW chips). Measured on
    the 2-core dev box with one torch thread: 1.3x the plain module at batch 1, 1.15x at batch
    64 (benchmarks/teacher_speed.py).
    """
    fused = copy.deepcopy(model)
    pairs = [(fused, "conv1", "bn1")] + [
        (block, conv, affine)
        for stage in fused.stages
        for block in stage
        for conv, affine in (("conv1", "bn1"), ("conv2", "bn2"))
    ]
    with torch.no_grad():
        for owner, conv_name, affine_name in pairs:
            conv, affine = getattr(owner, conv_name), getattr(owner, affine_name)
            conv.weight.mul_(affine.weight.view(-1, 1, 1, 1))
            conv.bias.mul_(affine.weight).add_(affine.bias)
            setattr(owner, affine_name, nn.Identity())
    return fused.to(memory_format=torch.channels_last).eval()


def _expected_kinds() -> list[str]:
    """The layer sequence dlib serializes for ``anet_type``, input side first."""
    kinds = ["con", "affine", "relu", "max_pool"]
    body = ["tag_or_skip", "con", "affine", "relu", "con", "affine"]
    for _, downs in STAGES:
        for down in downs:
            tail = ["tag_or_skip", "tag_or_skip", "avg_pool"] if down else []
            kinds += body + tail + ["add_prev", "relu"]
    return kinds + ["avg_pool", "fc"]


def _check_structure(layers: list[DlibLayer], path: str) -> None:
    """Refuse a file whose layers differ from anet_type's in kind or pooling geometry."""
    kinds = [layer.kind for layer in layers]
    expected = _expected_kinds()
    if kinds != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(kinds, expected, strict=False)) if a != b),
            min(len(kinds), len(expected)),
        )
        raise DlibFormatError(
            f"{path}: not dlib's face ResNet: layer {first} differs "
            f"({len(kinds)} layers, expected {len(expected)})"
        )
    pools = [layer.attrs for layer in layers if layer.kind in ("max_pool", "avg_pool")]
    want = {"nr": 3, "nc": 3, "stride": (2, 2), "padding": (0, 0)}
    geometry = [want] + [{**want, "nr": 2, "nc": 2}] * (len(pools) - 2)
    geometry.append({"nr": 0, "nc": 0, "stride": (1, 1), "padding": (0, 0)})
    for attrs, spec in zip(pools, geometry, strict=True):
        if any(attrs[k] != v for k, v in spec.items()):
            raise DlibFormatError(f"{path}: unexpected pooling layer {attrs}, expected {spec}")


def state_dict_from_dlib(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Parse dlib's .dat into a ``DlibResNet`` state dict, checking every layer's geometry."""
    net = read_dlib_net(path)
    _check_structure(net.layers, str(path))
    if (net.input.attrs["nr"], net.input.attrs["nc"]) != (INPUT_SIZE, INPUT_SIZE):
        raise DlibFormatError(f"{path}: input size is not {INPUT_SIZE}x{INPUT_SIZE}")
    model = DlibResNet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    affines = [m for m in model.modules() if isinstance(m, Affine)]
    names = {id(m): n for n, m in model.named_modules()}
    state = {"mean": torch.tensor(net.input.attrs["mean"], dtype=torch.float32).view(1, 3, 1, 1)}
    dlib_convs = [layer for layer in net.layers if layer.kind == "con"]
    dlib_affines = [layer for layer in net.layers if layer.kind == "affine"]
    for conv, layer in zip(convs, dlib_convs, strict=True):
        weight = layer.arrays["weight"]
        padding = tuple(conv.padding)
        if (
            weight.shape != tuple(conv.weight.shape)
            or layer.attrs["stride"] != conv.stride
            or layer.attrs["padding"] != padding
            or "bias" not in layer.arrays
        ):
            raise DlibFormatError(f"{path}: conv {names[id(conv)]} does not match the file")
        state[f"{names[id(conv)]}.weight"] = torch.from_numpy(weight)
        state[f"{names[id(conv)]}.bias"] = torch.from_numpy(layer.arrays["bias"])
    for affine, layer in zip(affines, dlib_affines, strict=True):
        gamma, beta = layer.arrays["gamma"].reshape(-1), layer.arrays["beta"].reshape(-1)
        if layer.attrs["mode"] != 0 or gamma.shape != tuple(affine.weight.shape):
            raise DlibFormatError(f"{path}: affine {names[id(affine)]} does not match the file")
        state[f"{names[id(affine)]}.weight"] = torch.from_numpy(gamma)
        state[f"{names[id(affine)]}.bias"] = torch.from_numpy(beta)
    fc = net.layers[-1]
    if fc.arrays["weight"].shape != (256, EMBEDDING_DIM) or "bias" in fc.arrays:
        raise DlibFormatError(f"{path}: fc layer does not match the file")
    state["fc.weight"] = torch.from_numpy(np.ascontiguousarray(fc.arrays["weight"].T))
    return state


_STATE_CACHE: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}
_STATE_LOCK = threading.Lock()


def _cached_state(path: Path) -> dict[str, torch.Tensor]:
    """Parsed weights, kept per (path, size, mtime) so repeated loads skip the parse."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _STATE_LOCK:
        if key not in _STATE_CACHE:
            _STATE_CACHE[key] = state_dict_from_dlib(path)
        return _STATE_CACHE[key]


def load_dlib_resnet(path: str | os.PathLike | None = None) -> DlibResNet:
    """A ``DlibResNet`` (eval mode) with the weights of dlib's .dat (default: the shipped one)."""
    path = Path(path) if path is not None else model_file(RECOGNITION_MODEL)
    model = DlibResNet()
    model.load_state_dict({k: v.clone() for k, v in _cached_state(path).items()})
    return model.eval()


def weights_digest(path: str | os.PathLike | None = None) -> str:
    """Short sha256 of the .dat, for cache keys of embeddings made with these weights."""
    path = Path(path) if path is not None else model_file(RECOGNITION_MODEL)
    return file_digest(path)[:12]


@register_encoder("dlib-resnet-torch")
def dlib_resnet_encoder(batch_size: int = 64, device: str = "cpu") -> TorchEncoder:
    """The teacher as a PyTorch encoder (same embeddings as ``dlib`` up to float rounding)."""
    return TorchEncoder(
        fuse_for_inference(load_dlib_resnet()),
        name="dlib-resnet-torch",
        input_size=INPUT_SIZE,
        dim=EMBEDDING_DIM,
        batch_size=batch_size,
        device=device,
        key=f"dlib-resnet-torch-{weights_digest()}",
    )
