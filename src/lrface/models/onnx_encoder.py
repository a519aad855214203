"""A PyTorch encoder's network run by ONNX Runtime, for CPU inference on few faces at a time.

Video (``lrface watch``) embeds a handful of faces per frame, in batches of 1-6. There PyTorch's
per-call overhead dominates, and ONNX Runtime runs the same network faster (measured with
``benchmarks/encoder_speed.py --onnx``: docs/results.md, section 5). The network is exported
once per weights (the encoder's cache key names the file under the cache directory's
``onnx/``) and gives the same embeddings up to float rounding, so the encoder keeps its cache
key and its calibrations.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from lrface.models.encoder import FaceEncoder, TorchEncoder
from lrface.models.export import export_onnx
from lrface.paths import cache_dir

RUNTIMES = ("torch", "onnx")


def onnx_file(encoder: TorchEncoder, fresh: bool = False) -> Path:
    """The encoder's network as ONNX, exported on first use or with ``fresh`` (written whole,
    then renamed, so a crash or a concurrent process never leaves half a file under the final
    name)."""
    directory = cache_dir() / "onnx"
    path = directory / f"{encoder.cache_key}.onnx"
    if fresh or not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=directory)
        os.close(fd)
        try:
            export_onnx(encoder.module, tmp, input_size=encoder.input_size)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return path


class OnnxEncoder(FaceEncoder):
    """``encoder``'s network under ONNX Runtime on the CPU, with the same name, input, cache key,
    teacher and size cutoff. ``threads``: ONNX Runtime's intra-op threads (default: torch's
    thread count, so ``OMP_NUM_THREADS`` limits both runtimes alike)."""

    def __init__(self, encoder: TorchEncoder, threads: int | None = None):
        import onnxruntime as ort

        super().__init__(batch_size=encoder.batch_size, device="cpu")
        self.name = encoder.name
        self.input_size = encoder.input_size
        self.dim = encoder.dim
        self.upsample = encoder.upsample
        self.teacher = encoder.teacher
        self.size_cutoff = encoder.size_cutoff
        self._key = encoder.cache_key
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        path = onnx_file(encoder)
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception:  # onnxruntime's own types: a cached file damaged since it was written
            path = onnx_file(encoder, fresh=True)
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        self._input = self.session.get_inputs()[0].name

    @property
    def cache_key(self) -> str:
        return self._key

    def _embed_batch(self, chips: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
        return self.session.run(None, {self._input: x})[0]


def with_runtime(encoder: FaceEncoder | None, runtime: str) -> FaceEncoder | None:
    """``encoder`` under ``runtime`` (``torch``: unchanged; ``onnx``: a CPU ``TorchEncoder``'s
    network under ONNX Runtime; other encoders and GPU ones stay as they are)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; one of {', '.join(RUNTIMES)}")
    if runtime == "onnx" and isinstance(encoder, TorchEncoder) and encoder.device == "cpu":
        return OnnxEncoder(encoder)
    return encoder
