"""Reader for dlib's serialized DNN files (``dlib::serialize(net)``), no dlib needed.

Written from dlib's documented format so that the teacher can run without dlib:

* integers (``serialize.h``): a control byte whose low nibble is the number of little-endian
  value bytes that follow and whose bit 7 marks a negative number (bits 4-6 are zero);
* floats and doubles: ``float_details``, i.e. an integer mantissa then an integer exponent,
  value = mantissa * 2**exponent (exponents 32000/32001/32002 mean inf/-inf/nan);
* bools: the characters ``'1'``/``'0'``; strings: integer length then the bytes;
* tensors (``dnn/tensor.h``, version 2): num_samples, k, nr, nc, then raw little-endian float32;
  alias tensors (version 1): the four dimensions only;
* networks (``dnn/core.h``): ``add_loss_layer`` writes its version, the loss details, then the
  subnetwork; ``add_layer`` writes its version and then *first* its subnetwork, so the file
  starts with a run of version numbers from the output layer down to the input, then the input
  layer, then every layer's details from the input up to the output. ``add_tag_layer`` and
  ``add_skip_layer`` write only their version (1) and subnetwork: their tag ids live in the C++
  type, not in the file, so the graph wiring comes from the model definition.

``read_dlib_net`` returns the layers in forward order (input side first) with tag/skip layers
kept as ``"tag_or_skip"`` placeholders. Layer kinds supported: those of dlib's face recognition
ResNet (``con_4``, ``affine_``, ``relu_``, ``max_pool_2``, ``avg_pool_2``, ``add_prev_``,
``fc_2``, ``input_rgb_image_sized``, ``loss_metric_2``); anything else raises DlibFormatError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_FLOAT_SPECIAL = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
_MAX_DIM = 1 << 31


class DlibFormatError(ValueError):
    """A file that is not a dlib network this reader understands; the message names the file."""


@dataclass
class DlibLayer:
    """One layer: its dlib serialization name, scalar settings and weight arrays."""

    kind: str
    attrs: dict[str, float | int | tuple[int, ...]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed network: input layer, layers in forward order, and the loss (if any)."""

    input: DlibLayer
    layers: list[DlibLayer]
    loss: DlibLayer | None


class _Reader:
    """Cursor over the file's bytes; every read is bounds-checked."""

    def __init__(self, data: bytes, name: str):
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    def fail(self, reason: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {reason} (at byte {self.pos} of {len(self.data)})")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: needed {n} more bytes")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if control & 0x70 or size > 8:
            self.pos -= 1
            raise self.fail(f"not a dlib integer (control byte 0x{control:02x})")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def dim(self) -> int:
        value = self.int()
        if not 0 <= value < _MAX_DIM:
            raise self.fail(f"implausible tensor dimension {value}")
        return value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        return float(np.ldexp(float(mantissa), exponent))

    def bool(self) -> bool:
        char = bytes(self.take(1))
        if char not in (b"0", b"1"):
            self.pos -= 1
            raise self.fail(f"expected a serialized bool, found {char!r}")
        return char == b"1"

    def string(self) -> str:
        length = self.int()
        if not 0 <= length <= len(self.data) - self.pos:
            raise self.fail(f"implausible string length {length}")
        raw = bytes(self.take(length))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"expected a layer name, found bytes {raw[:32]!r}") from None

    def peek_name(self) -> str | None:
        """The short ASCII identifier at the cursor, if there is one (cursor unchanged)."""
        start = self.pos
        try:
            length = self.int()
            if not 0 < length <= 64 or self.pos + length > len(self.data):
                return None
            raw = bytes(self.data[self.pos : self.pos + length])
            if not all(ch == 0x5F or 0x30 <= ch <= 0x39 or 0x61 <= ch <= 0x7A for ch in raw):
                return None
            return raw.decode("ascii")
        except DlibFormatError:
            return None
        finally:
            self.pos = start

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise self.fail(f"unsupported tensor version {version} (expected 2)")
        shape = tuple(self.dim() for _ in range(4))
        count = int(np.prod(shape, dtype=np.int64))
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, ...]:
        version = self.int()
        if version != 1:
            raise self.fail(f"unsupported alias_tensor version {version} (expected 1)")
        return tuple(self.dim() for _ in range(4))


def _slice(params: np.ndarray, offset: int, shape: tuple[int, ...], reader: _Reader) -> np.ndarray:
    """The view dlib's ``alias_tensor(shape)`` gives into ``params`` at ``offset``."""
    flat = params.reshape(-1)
    size = int(np.prod(shape, dtype=np.int64))
    if offset + size > flat.size:
        raise reader.fail(f"parameter block too small for alias tensor {shape} at {offset}")
    return flat[offset : offset + size].reshape(shape).copy()


def _read_con(r: _Reader, layer: DlibLayer) -> None:
    params = r.tensor()
    num_filters, nr, nc = r.int(), r.int(), r.int()
    stride_y, stride_x, pad_y, pad_x = r.int(), r.int(), r.int(), r.int()
    filters = r.alias_tensor()
    r.alias_tensor()  # biases: (1, num_filters), stored after the filters in params
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        layer.attrs[name] = r.float()
    if filters[0] != num_filters or filters[2:] != (nr, nc):
        raise r.fail(f"con_ filters {filters} disagree with {num_filters} x {nr} x {nc}")
    layer.attrs.update(
        num_filters=num_filters, nr=nr, nc=nc, stride=(stride_y, stride_x), padding=(pad_y, pad_x)
    )
    layer.arrays["weight"] = _slice(params, 0, filters, r)
    if params.size > int(np.prod(filters)):
        layer.arrays["bias"] = _slice(params, int(np.prod(filters)), (num_filters,), r)


def _read_affine(r: _Reader, layer: DlibLayer) -> None:
    params = r.tensor()
    gamma, beta = r.alias_tensor(), r.alias_tensor()
    layer.attrs["mode"] = r.int()  # dlib layer_mode: CONV_MODE (per channel) or FC_MODE
    size = int(np.prod(gamma))
    layer.arrays["gamma"] = _slice(params, 0, gamma, r)
    layer.arrays["beta"] = _slice(params, size, beta, r)


def _read_pool(r: _Reader, layer: DlibLayer) -> None:
    nr, nc, stride_y, stride_x, pad_y, pad_x = (r.int() for _ in range(6))
    layer.attrs.update(nr=nr, nc=nc, stride=(stride_y, stride_x), padding=(pad_y, pad_x))


def _read_fc(r: _Reader, layer: DlibLayer) -> None:
    num_outputs, num_inputs = r.int(), r.int()
    params = r.tensor()
    weights = r.alias_tensor()
    r.alias_tensor()  # biases: (1, num_outputs), present in the params only with FC_HAS_BIAS
    layer.attrs["bias_mode"] = r.int()  # dlib fc_bias_mode: FC_HAS_BIAS=0, FC_NO_BIAS=1
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        layer.attrs[name] = r.float()
    layer.attrs.update(num_outputs=num_outputs, num_inputs=num_inputs)
    # dlib computes output = input (N x num_inputs) @ weights (num_inputs x num_outputs).
    layer.arrays["weight"] = _slice(params, 0, (weights[0], weights[1]), r)
    if layer.attrs["bias_mode"] == 0:
        layer.arrays["bias"] = _slice(params, int(np.prod(weights)), (num_outputs,), r)


def _read_nothing(r: _Reader, layer: DlibLayer) -> None:
    """Layers whose serialization is their name only."""


_DETAILS = {
    "con_4": ("con", _read_con),
    "affine_": ("affine", _read_affine),
    "relu_": ("relu", _read_nothing),
    "max_pool_2": ("max_pool", _read_pool),
    "avg_pool_2": ("avg_pool", _read_pool),
    "add_prev_": ("add_prev", _read_nothing),
    "fc_2": ("fc", _read_fc),
}


def _read_details(r: _Reader) -> DlibLayer:
    name = r.string()
    if name not in _DETAILS:
        raise r.fail(f"unsupported layer type {name!r}")
    kind, reader = _DETAILS[name]
    layer = DlibLayer(kind)
    reader(r, layer)
    return layer


def _read_input(r: _Reader) -> DlibLayer:
    name = r.string()
    if name != "input_rgb_image_sized":
        raise r.fail(f"unsupported input layer {name!r}")
    mean = (r.float(), r.float(), r.float())
    rows, cols = r.int(), r.int()
    return DlibLayer("input_rgb_image_sized", {"mean": mean, "nr": rows, "nc": cols})


def _read_loss(r: _Reader) -> DlibLayer:
    name = r.string()
    if name != "loss_metric_2":
        raise r.fail(f"unsupported loss layer {name!r}")
    return DlibLayer("loss_metric", {"margin": r.float(), "dist_thresh": r.float()})


def _skip_tensor(r: _Reader) -> None:
    """Training-time state (gradients, cached outputs) stored after each layer: read, dropped."""
    r.tensor()


def parse_dlib_net(data: bytes, name: str = "<bytes>") -> DlibNet:
    """Parse the bytes of a serialized dlib network (see the module docstring)."""
    r = _Reader(data, name)
    if len(data) == 0:
        raise r.fail("empty file")
    loss = None
    first = r.int()
    if (r.peek_name() or "").startswith("loss_"):
        if first != 1:
            raise r.fail(f"unexpected add_loss_layer version {first}")
        loss = _read_loss(r)
        first = r.int()
    # Versions from the output layer down: 2 = add_layer, 1 = tag/skip layer; the input-level
    # add_layer (version 2 or 3) is the one followed by the input layer's name.
    versions = [first]
    while not (r.peek_name() or "").startswith("input_"):
        if versions[-1] not in (1, 2):
            raise r.fail(f"not a dlib network: unexpected layer version {versions[-1]}")
        versions.append(r.int())
    input_version = versions.pop()
    if input_version not in (2, 3):
        raise r.fail(f"unexpected input add_layer version {input_version}")
    input_layer = _read_input(r)
    layers = [_read_details(r)]
    _read_flags_and_state(r, tensors=3)
    if input_version == 3:
        r.int()  # _sample_expansion_factor
    for version in reversed(versions):
        if version == 1:
            layers.append(DlibLayer("tag_or_skip"))
            continue
        layers.append(_read_details(r))
        _read_flags_and_state(r, tensors=3)
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} unexpected bytes after the network")
    return DlibNet(input=input_layer, layers=layers, loss=loss)


def _read_flags_and_state(r: _Reader, tensors: int) -> None:
    for _ in range(3):  # setup called, gradient stale, output getters disabled
        r.bool()
    for _ in range(tensors):
        _skip_tensor(r)


def read_dlib_net(path: str | os.PathLike) -> DlibNet:
    """Parse a dlib network file; DlibFormatError (naming the file) if it is not one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DlibFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_dlib_net(data, str(path))
