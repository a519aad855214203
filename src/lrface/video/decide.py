"""A track's answer: the best identity with its score and top-k, or *unknown*.

Two seams keep this independent of how the gallery is stored and calibrated:

- a ``Searcher`` maps unit embeddings (``N x d``), ``k`` and optionally each row's probe
  (``lrface.calibration.FaceRef``: encoder and resolution, for normalized scores) to each
  row's top-k ``(identity, score)`` pairs, best first;
- a ``ThresholdFn`` maps (encoder key, face resolution in px) to the open-set threshold for a
  probe of that kind, or None when there is none (then every track gets its best identity).

A track is *unknown* when its best score is under the threshold (or the gallery is empty).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lrface.calibration import ThresholdBook

Searcher = Callable[..., list[list[tuple[str, float]]]]
ThresholdFn = Callable[[str, int], float | None]


@dataclass
class Decision:
    identity: str | None
    score: float
    top: list[tuple[str, float]]
    threshold: float | None

    @property
    def unknown(self) -> bool:
        return self.identity is None

    def to_dict(self) -> dict:
        return {
            "identity": self.identity if self.identity is not None else "unknown",
            "score": round(self.score, 4),
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "top": [{"name": n, "score": round(s, 4)} for n, s in self.top],
        }


def decide(top: list[tuple[str, float]], threshold: float | None) -> Decision:
    """Best of ``top`` unless its score is under ``threshold``."""
    if not top:
        return Decision(None, float("nan"), [], threshold)
    name, score = top[0]
    known = threshold is None or score >= threshold
    return Decision(name if known else None, score, list(top), threshold)


def gallery_searcher(gallery) -> Searcher:
    """A ``Searcher`` over an ``lrface.search.gallery.Gallery``."""

    def search(embeddings: np.ndarray, k: int, probes=None) -> list[list[tuple[str, float]]]:
        rows = gallery.search(embeddings, k, probes)
        return [[(m.name, m.score) for m in row] for row in rows]

    return search


@dataclass
class BookThresholds:
    """A ``ThresholdFn`` over an ``lrface.calibration.ThresholdBook``: the open-set threshold
    calibrated for the encoder and the resolution nearest the face's (``openset`` in the
    calibration files). With ``tracks`` a track calibration of the encoder (set on pooled
    tracks, ``lrface calibrate-watch``) comes first and the single-face one is the fallback.
    ``gallery_size``: the watch-list's identities; a file with thresholds by watch-list size
    gives the one for this size (interpolated on log N; above its largest size, the largest's).
    ValueError when no file has one for that encoder and gallery."""

    book: ThresholdBook
    gallery_encoder: str
    tracks: bool = False
    gallery_size: int | None = None
    scoring: str = "raw"
    """The scores the threshold applies to (files set on other scores are skipped)."""
    scoring_for: Callable[[str], str] | None = None
    """How the search scored a probe of each encoder (``Gallery.scoring_for``), where that
    differs by encoder; else ``scoring``."""

    def choice(self, encoder: str, size: int):
        """The ``lrface.calibration.Choice`` (threshold, file and key, reason)."""
        from lrface.calibration import FaceRef, as_resolution

        probe = FaceRef(encoder, as_resolution(size))
        scoring = self.scoring_for(encoder) if self.scoring_for else self.scoring
        return self.book.openset(
            probe, self.gallery_encoder, self.tracks, self.gallery_size, scoring
        )

    def __call__(self, encoder: str, size: int) -> float:
        return self.choice(encoder, size).threshold


def fixed_threshold(value: float | None) -> ThresholdFn:
    """The same threshold for every encoder and size (None: never unknown)."""
    return lambda encoder, size: value
