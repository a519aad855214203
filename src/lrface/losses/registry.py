"""The loss registry: ``@register_loss("l2")`` on a ``TransferLoss`` class. It imports none of
its entries; ``lrface.losses.methods`` imports the built-in loss modules and builds methods
from the registered names."""

from __future__ import annotations

from lrface.registry import Registry

LOSSES: Registry[type] = Registry("loss")
register_loss = LOSSES.register
