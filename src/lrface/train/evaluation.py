"""Evaluation during training: the hook's type and the choice of the ``best/`` checkpoint.

The hook (``train.lfw.make_evaluate_fn`` for LFW) maps the student, as a ``FaceEncoder``, to
named metrics; it runs every ``eval_every`` steps and at the last step, on rank 0 only. The
metric ``select_metric`` picks ``best/``, which is therefore chosen on the evaluation pairs:
a run directory loads its final checkpoint, ``best/`` only when named.
"""

from __future__ import annotations

from collections.abc import Callable

from lrface.models.encoder import FaceEncoder

EvaluateFn = Callable[[FaceEncoder], dict[str, float]]


def improves(metrics: dict[str, float], select_metric: str, best: float | None) -> bool:
    """Whether ``metrics`` beat the best value so far of ``select_metric`` (higher is better)."""
    value = metrics.get(select_metric)
    if value is None:
        raise KeyError(
            f"select_metric {select_metric!r} not among the evaluation metrics {sorted(metrics)}"
        )
    return best is None or value > best
