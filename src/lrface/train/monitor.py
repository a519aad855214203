"""Divergence checks: a run stops when its loss is not finite or explodes."""

from __future__ import annotations

import math
import statistics
from collections import deque


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or exploded; the message names the last good checkpoint."""


class LossMonitor:
    """Flags a loss that is not finite or exceeds ``factor`` x the running median.

    The median is taken over the last ``window`` accepted losses, once there are ``warmup``
    of them; a flagged loss is not added. ``history`` is checkpointed, so a resumed run checks
    against the same median.
    """

    def __init__(self, factor: float, window: int = 200, warmup: int = 20):
        self.factor, self.warmup = factor, warmup
        self.history: deque[float] = deque(maxlen=window)

    def problem(self, value: float) -> str | None:
        """Why ``value`` stops the run, or ``None`` (then it joins the history)."""
        if not math.isfinite(value):
            return f"loss is {value}"
        if len(self.history) >= self.warmup:
            median = statistics.median(self.history)
            if median > 0 and value > self.factor * median:
                return f"loss {value:.4g} exceeds {self.factor:g} x its running median {median:.4g}"
        self.history.append(value)
        return None
