"""``lrface encoders`` and ``lrface export``: what encoders there are, and one exported to
ONNX for deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lrface.cli.common import fail, load_encoder


def encoders() -> None:
    """List the registered encoders."""
    from lrface.models.factory import list_encoders

    typer.echo(json.dumps(list_encoders()))


def export(
    encoder: Annotated[
        str,
        typer.Argument(help="PyTorch encoder name or a trained student checkpoint dir."),
    ],
    out: Annotated[Path, typer.Option(help="ONNX file to write (a .json beside it describes it).")],
    check: Annotated[
        int, typer.Option(help="Random faces to compare ONNX Runtime with PyTorch on (0: skip).")
    ] = 8,
) -> None:
    """Export an encoder to ONNX for deployment, with a parity check against PyTorch.

    The graph takes float RGB ``N x 3 x S x S`` in [0, 255] (input ``chips``, S = the encoder's
    input size, any batch) and returns raw ``N x D`` embeddings (output ``embedding``;
    L2-normalize them before cosine scoring).
    """
    import numpy as np

    from lrface.models.encoder import TorchEncoder
    from lrface.models.export import export_onnx, onnx_max_abs_diff

    model = load_encoder(encoder, option="ENCODER")
    if not isinstance(model, TorchEncoder):
        raise fail(
            f"ENCODER: {encoder!r} is not a PyTorch encoder; export 'dlib-resnet-torch' (the same "
            "network) or a student checkpoint"
        )
    path = export_onnx(model.module, out, input_size=model.input_size)
    info = {
        "source": encoder,
        "encoder": model.name,
        "input": "chips: float32 RGB N x 3 x S x S in [0, 255]",
        "input_size": model.input_size,
        "output": "embedding: float32 N x D, not normalized",
        "dim": model.dim,
        "cache_key": model.cache_key,
    }
    if check:
        side = model.input_size
        faces = np.random.default_rng(0).uniform(0, 255, (check, 3, side, side))
        info["max_abs_diff_vs_torch"] = diff = onnx_max_abs_diff(path, model.module, faces)
        if diff > 1e-3:
            path.unlink()
            raise fail(
                f"{path}: ONNX Runtime differs from PyTorch by up to {diff:.2e}; not usable, "
                "so the file was removed"
            )
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    typer.echo(json.dumps({"onnx": str(path), **info}, indent=2))
