"""Transfer losses: small modules, each with a weight, composed by a method config."""

from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.methods import METHODS, LossSet, build_losses, parse_method
from lrface.losses.registry import LOSSES

__all__ = [
    "LOSSES",
    "METHODS",
    "LossSet",
    "TransferLoss",
    "TransferOutputs",
    "build_losses",
    "parse_method",
]
