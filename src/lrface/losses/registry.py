"""Losses by name, named transfer methods, and the helpers the training engine composes with.

A method is a spec ``{loss_name: {"weight": w, **constructor_kwargs}}``; ``parse_method``
turns ``"adda+l2"`` (default weights) or ``"l2=5,darkrank=16"`` (explicit weights) or a
name from ``METHODS`` into one, and ``build_losses`` instantiates it.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from torch import nn

from lrface.losses.adversarial import ADDA, ADDALoss, DANNLoss
from lrface.losses.attention import AttentionSimilarityLoss
from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.contrastive import InfoNCE
from lrface.losses.darkrank import DarkRank
from lrface.losses.feature import FeatureL2
from lrface.losses.fused import FusedTargetLoss
from lrface.losses.guided import GuidedLoss
from lrface.losses.hint import HintLoss
from lrface.losses.margin import ArcFaceLoss
from lrface.losses.mmd import DomainMMD, NSTLoss
from lrface.losses.prototype import PrototypeLoss

Spec = dict[str, dict[str, Any]]

LOSSES: dict[str, type[TransferLoss]] = {
    "l2": FeatureL2,
    "nst": NSTLoss,
    "mmd": DomainMMD,
    "darkrank": DarkRank,
    "contrastive": InfoNCE,
    "dann": DANNLoss,
    "adda": ADDALoss,
    "guided": GuidedLoss,
    "arcface": ArcFaceLoss,
    "prototype": PrototypeLoss,
    "hint": HintLoss,
    "askd": AttentionSimilarityLoss,
    "fused": FusedTargetLoss,
}

METHODS: dict[str, Spec] = {
    "l2": {"l2": {"weight": 5.0}},
    "adda": {"adda": {"weight": 1.0}},
    "adda+l2": {"adda": {"weight": 1.0}, "l2": {"weight": 5.0}},
    "dann": {"dann": {"weight": 1.0}},
    "dann+l2": {"dann": {"weight": 1.0}, "l2": {"weight": 5.0}},
    "nst+l2": {"nst": {"weight": 50.0}, "l2": {"weight": 5.0}},
    "mmd+l2": {"mmd": {"weight": 1.0}, "l2": {"weight": 5.0}},
    "darkrank+l2": {"darkrank": {"weight": 16.0}, "l2": {"weight": 5.0}},
    "contrastive+l2": {"contrastive": {"weight": 1.0}, "l2": {"weight": 5.0}},
    "guided": {"guided": {"weight": 1.0}},
    "l2+arcface": {"l2": {"weight": 5.0}, "arcface": {"weight": 1.0}},
    "prototype+l2": {"prototype": {"weight": 1.0}, "l2": {"weight": 5.0}},
    "askd+prototype+l2": {
        "askd": {"weight": 1.0},
        "prototype": {"weight": 1.0},
        "l2": {"weight": 5.0},
    },
    "hint+prototype+l2": {
        "hint": {"weight": 1.0},
        "prototype": {"weight": 1.0},
        "l2": {"weight": 5.0},
    },
}


def parse_method(text: str) -> Spec:
    """A spec from a ``METHODS`` name, ``"a+b"`` (default weights) or ``"a=w1,b=w2"``.

    ``+`` and ``,`` both separate terms; a term without ``=w`` keeps its class's default weight.
    """
    text = text.strip()
    if text in METHODS:
        return copy.deepcopy(METHODS[text])
    spec: Spec = {}
    for term in text.replace(",", "+").split("+"):
        name, sep, weight = (part.strip() for part in term.partition("="))
        if name not in LOSSES:
            raise KeyError(f"unknown loss {name!r} in {text!r}; known: {sorted(LOSSES)}")
        if name in spec:
            raise ValueError(f"loss {name!r} appears twice in {text!r}")
        spec[name] = {"weight": float(weight)} if sep else {}
    return spec


def build_losses(spec: Spec, **shared: Any) -> nn.ModuleDict:
    """Instantiate a spec: ``{name: {"weight": w, **kwargs}}`` -> ``ModuleDict`` of losses.

    ``shared`` kwargs (e.g. ``num_classes``, ``dim``) go to every constructor that accepts
    them; a spec's own kwargs override them.
    """
    losses = nn.ModuleDict()
    for name, options in spec.items():
        if name not in LOSSES:
            raise KeyError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
        cls = LOSSES[name]
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in shared.items() if k in accepted}
        kwargs.update(options)
        losses[name] = cls(**kwargs)
    return losses


def required_fields(losses: nn.ModuleDict) -> set[str]:
    """Union of the losses' ``needs``: which optional ``TransferOutputs`` fields to compute."""
    return {field for loss in losses.values() for field in loss.needs}


def map_stages(losses: nn.ModuleDict) -> tuple[int, ...]:
    """Sorted union of the teacher-map stages the losses read (empty when none does)."""
    return tuple(sorted({s for loss in losses.values() for s in loss.stages}))


def total_loss(
    losses: nn.ModuleDict, outputs: TransferOutputs
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the losses, and each loss's unweighted value (plus ``total``) as floats."""
    if not len(losses):
        raise ValueError("no losses to sum")
    parts: dict[str, float] = {}
    total = None
    for name, loss in losses.items():
        value = loss(outputs)
        parts[name] = value.item()
        total = loss.weight * value if total is None else total + loss.weight * value
    parts["total"] = total.item()
    return total, parts


def adda_modules(losses: nn.ModuleDict) -> list[ADDA]:
    """The ADDA helpers inside these losses (they carry their own optimizer)."""
    return [loss.adda for loss in losses.values() if isinstance(loss, ADDALoss)]


def discriminator_steps(losses: nn.ModuleDict, outputs: TransferOutputs) -> dict[str, float]:
    """Run every ADDA discriminator step on this batch; call before ``total_loss`` each step."""
    metrics: dict[str, float] = {}
    for name, loss in losses.items():
        if isinstance(loss, ADDALoss):
            step = loss.adda.discriminator_step(outputs.student, outputs.teacher)
            metrics.update({f"{name}_disc_{k}": v for k, v in step.items()})
    return metrics


def loss_parameters(losses: nn.ModuleDict) -> list[nn.Parameter]:
    """Parameters the student's optimizer must also train (DANN discriminator, classifier heads).

    ADDA discriminators are left out: their own optimizer trains them.
    """
    excluded = {id(p) for adda in adda_modules(losses) for p in adda.parameters()}
    return [p for p in losses.parameters() if id(p) not in excluded]
