"""Named transfer methods and the helpers the training engine composes with. Importing this
module registers the built-in losses (their modules are imported here, not by the registry).

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

from lrface.losses import (  # noqa: F401 (imported to register the built-in losses)
    attention,
    contrastive,
    darkrank,
    feature,
    fused,
    guided,
    hint,
    margin,
    mmd,
    prototype,
)
from lrface.losses.adversarial import ADDA, ADDALoss
from lrface.losses.base import TransferLoss, TransferOutputs
from lrface.losses.registry import LOSSES

Spec = dict[str, dict[str, Any]]

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


class LossSet(nn.ModuleDict):
    """The losses of one method, built once and asked once: ``fields`` (the optional
    ``TransferOutputs`` fields they read), ``stages`` (the teacher-map stages, sorted),
    ``adda_modules`` (the ADDA helpers, which carry their own optimizer), the parameters the
    student's optimizer trains with them, the discriminator steps and the weighted total."""

    def __init__(self, losses: dict[str, TransferLoss]):
        super().__init__(losses)
        self.fields = frozenset(f for loss in losses.values() for f in loss.needs)
        self.stages = tuple(sorted({s for loss in losses.values() for s in loss.stages}))
        self.adda_modules: list[ADDA] = [
            loss.adda for loss in losses.values() if isinstance(loss, ADDALoss)
        ]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the student's optimizer must also train (DANN discriminator, classifier
        heads); ADDA discriminators are left out: their own optimizer trains them."""
        excluded = {id(p) for adda in self.adda_modules for p in adda.parameters()}
        return [p for p in self.parameters() if id(p) not in excluded]

    def discriminator_steps(self, outputs: TransferOutputs) -> dict[str, float]:
        """Run every ADDA discriminator step on this batch; call before ``total`` each step."""
        metrics: dict[str, float] = {}
        for name, loss in self.items():
            if isinstance(loss, ADDALoss):
                step = loss.adda.discriminator_step(outputs.student, outputs.teacher)
                metrics.update({f"{name}_disc_{k}": v for k, v in step.items()})
        return metrics

    def total(self, outputs: TransferOutputs) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted sum of the losses, and each loss's unweighted value (plus ``total``)."""
        if not len(self):
            raise ValueError("no losses to sum")
        parts: dict[str, float] = {}
        total = None
        for name, loss in self.items():
            value = loss(outputs)
            parts[name] = value.item()
            total = loss.weight * value if total is None else total + loss.weight * value
        parts["total"] = total.item()
        return total, parts


def build_losses(spec: Spec, **shared: Any) -> LossSet:
    """Instantiate a spec: ``{name: {"weight": w, **kwargs}}`` -> the ``LossSet``.

    ``shared`` kwargs (e.g. ``num_classes``, ``dim``) go to every constructor that accepts
    them; a spec's own kwargs override them.
    """
    losses = {}
    for name, options in spec.items():
        cls = LOSSES.get(name)
        accepted = inspect.signature(cls.__init__).parameters
        kwargs = {k: v for k, v in shared.items() if k in accepted}
        kwargs.update(options)
        losses[name] = cls(**kwargs)
    return LossSet(losses)
