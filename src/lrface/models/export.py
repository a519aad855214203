"""ONNX export of any encoder module with the project's input contract, and a parity check.

Contract: ``forward(x)`` takes float RGB ``N x 3 x S x S`` in [0, 255] and returns ``N x D``.
The exported graph has one input ``chips`` and one output ``embedding``, both with a dynamic
batch axis, so a deployment can run any batch size.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT_NAME = "chips"
OUTPUT_NAME = "embedding"


def export_onnx(
    module: nn.Module, path: str | os.PathLike, input_size: int = 150, opset: int = 17
) -> Path:
    """Write ``module`` (in eval mode, on the CPU, float32) as ONNX to ``path``; return the path.

    Uses the TorchScript-based exporter (``dynamo=False``): it needs no extra packages and the
    encoders here have no data-dependent control flow on the batch axis.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(module).cpu().float().eval()
    example = torch.rand(2, 3, input_size, input_size) * 255.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices, not our concern
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return path


def onnx_max_abs_diff(onnx_path: str | os.PathLike, module: nn.Module, inputs: np.ndarray) -> float:
    """Largest |ONNX Runtime - PyTorch| over the outputs for float ``N x 3 x S x S`` inputs.

    Depends only on numpy, torch and onnxruntime, so it can check a model file anywhere.
    """
    import onnxruntime as ort

    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: inputs})
    model = copy.deepcopy(module).cpu().float().eval()
    with torch.inference_mode():
        torch_out = model(torch.from_numpy(inputs)).numpy()
    if onnx_out.shape != torch_out.shape:
        raise ValueError(f"output shapes differ: onnx {onnx_out.shape}, torch {torch_out.shape}")
    return float(np.abs(onnx_out - torch_out).max())
