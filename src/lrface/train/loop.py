"""What the training loop (``Trainer.fit``) returns, and when its periodic events fall due.

One step: the objective's total loss is checked (``monitor``: NaN, inf or an explosion stops
the run and names the last good checkpoint), back-propagated, clipped and applied; the EMA
follows and the LR schedule advances. Logs come every ``log_every`` steps, evaluation every
``eval_every`` and checkpoints every ``checkpoint_every`` steps, each also at the last step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainResult:
    """Where a run ended: its directory, step, last and best evaluation."""

    run_dir: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    best_step: int | None = None
    last_parts: dict[str, float] = field(default_factory=dict)


def due(step: int, every: int, last: int) -> bool:
    """Periodic events: every ``every`` steps (0 = never) and at the ``last`` step."""
    return step == last or (every > 0 and step % every == 0)
