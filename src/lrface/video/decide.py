"""What a track's open-set threshold is: a ``ThresholdFn`` maps (encoder key, face resolution
in px) to the open-set threshold for a probe of that kind, or None when there is none (then
every track gets its best identity). The decision itself is ``lrface.search.decision.decide``,
the one every search answer uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lrface.calibration import ThresholdBook

ThresholdFn = Callable[[str, int], float | None]


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

    def choice(self, encoder: str, size: int):
        """The ``lrface.calibration.Choice`` (threshold, file and key, reason)."""
        from lrface.calibration import FaceRef, as_resolution

        probe = FaceRef(encoder, as_resolution(size))
        return self.book.openset(probe, self.gallery_encoder, self.tracks, self.gallery_size)

    def __call__(self, encoder: str, size: int) -> float:
        return self.choice(encoder, size).threshold


def fixed_threshold(value: float | None) -> ThresholdFn:
    """The same threshold for every encoder and size (None: never unknown)."""
    return lambda encoder, size: value
