"""Transfer losses: small modules, each with a weight, composed by a method config."""

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.methods import (
    METHODS,
    build_losses,
    discriminator_steps,
    loss_parameters,
    map_stages,
    parse_method,
    required_fields,
    total_loss,
)
from lrface.losses.registry import LOSSES

__all__ = [
    "LOSSES",
    "METHODS",
    "TransferLoss",
    "TransferOutputs",
    "build_losses",
    "discriminator_steps",
    "loss_parameters",
    "map_stages",
    "parse_method",
    "required_fields",
    "total_loss",
]
