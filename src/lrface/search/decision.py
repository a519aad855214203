"""The open-set decision, written once: a search's best identity, or *unknown* when its score is
under the open-set threshold (or the gallery is empty).

One type and one JSON shape for every answer lrface gives: ``lrface gallery search``, the
service's ``/api/search`` and ``/api/watch``, and ``lrface watch``'s track events. A ``Searcher``
maps unit embeddings (``N x d``), ``k`` and optionally each row's probe
(``lrface.calibration.FaceRef``: encoder and resolution, for normalized scores) to each row's
top-k ``(identity, score)`` pairs, best first, so a decision does not depend on how the gallery
is stored or scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Searcher = Callable[..., list[list[tuple[str, float]]]]


@dataclass
class Decision:
    """``identity`` None: unknown (best ``score`` under ``threshold``, or nobody enrolled).
    ``threshold`` None: no open-set threshold was available, so ``identity`` is simply the best
    match (a ranking; ``reason`` says why there was none). ``source`` and ``reason`` say where
    the threshold came from; ``top`` is the ranked (name, score) list."""

    identity: str | None
    score: float | None
    threshold: float | None
    top: list[tuple[str, float]] = field(default_factory=list)
    source: str | None = None
    reason: str | None = None

    @property
    def unknown(self) -> bool:
        return self.identity is None

    def describe(self) -> str:
        """One line for people: the identity or unknown, with the threshold that decided it."""
        why = f"; {self.reason}" if self.reason else ""
        if self.threshold is None:
            return f"undecided ({self.reason or 'no open-set threshold'})"
        if self.identity is None:
            best = "empty gallery" if self.score is None else f"best score {self.score:.4f}"
            return f"unknown ({best} < threshold {self.threshold:.4f}{why})"
        return f"{self.identity} ({self.score:.4f} >= threshold {self.threshold:.4f}{why})"

    def to_dict(self) -> dict:
        """The one JSON shape of a decision."""
        return {
            "identity": "unknown" if self.identity is None else self.identity,
            "score": None if self.score is None else round(self.score, 4),
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "threshold_source": self.source,
            "threshold_reason": self.reason,
            "top": [{"name": n, "score": round(s, 4)} for n, s in self.top],
        }


def decide(
    top: list[tuple[str, float]],
    threshold: float | None,
    source: str | None = None,
    reason: str | None = None,
) -> Decision:
    """The best of ``top`` unless its score is under ``threshold`` (FPIR counts scores at or
    above the threshold as alarms, so a score equal to it is known)."""
    if not top:
        return Decision(None, None, threshold, [], source, reason)
    name, score = top[0]
    known = threshold is None or score >= threshold
    return Decision(name if known else None, float(score), threshold, list(top), source, reason)


def gallery_searcher(gallery) -> Searcher:
    """A ``Searcher`` over an ``lrface.search.gallery.Gallery`` (anything whose ``search``
    gives rows of matches with ``.name`` and ``.score``); ``probes`` (each row's ``FaceRef``)
    let a gallery with a normalizer score the rows by it."""

    def search(embeddings: np.ndarray, k: int, probes=None) -> list[list[tuple[str, float]]]:
        rows = gallery.search(embeddings, k, probes)
        return [[(m.name, m.score) for m in row] for row in rows]

    return search
