"""What a track's open-set threshold is: a ``ThresholdFn`` maps (encoder key, face resolution
in px, faces pooled) to the open-set threshold for a probe of that kind, or None when there is
none (then every track gets its best identity). The decision itself is
``lrface.search.decision.decide``, the one every search answer uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lrface.calibration import ThresholdBook

ThresholdFn = Callable[[str, int, int | None], float | None]


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

    def choice(self, encoder: str, size: int, faces: int | None = None):
        """The ``lrface.calibration.Choice`` (threshold, file and key, reason); ``faces``: the
        faces a track pooled (long tracks have thresholds of their own)."""
        from lrface.calibration import FaceRef, as_resolution

        probe = FaceRef(encoder, as_resolution(size))
        scoring = self.scoring_for(encoder) if self.scoring_for else self.scoring
        return self.book.openset(
            probe, self.gallery_encoder, self.tracks, self.gallery_size, scoring, faces
        )

    def __call__(self, encoder: str, size: int, faces: int | None = None) -> float:
        return self.choice(encoder, size, faces).threshold


def fixed_threshold(value: float | None) -> ThresholdFn:
    """The same threshold for every encoder, size and track length (None: never unknown)."""
    return lambda encoder, size, faces=None: value


def watch_thresholds(pipe, gallery, calibrations: list) -> tuple[BookThresholds, str]:
    """The open-set thresholds ``lrface watch`` (and ``lrface.watch``) judge tracks by, and a
    line saying where they come from: per encoder of ``pipe``, its track calibration (for
    ``gallery``'s size where the file has thresholds by size) else its single-face open-set
    thresholds, from ``calibrations`` in order (``lrface.pipeline.watch_calibrations`` lists
    the stored ones). ValueError now, not mid-video, when an encoder has none."""
    thresholds = BookThresholds(
        pipe.thresholds(calibrations), gallery.encoder, True, len(gallery),
        scoring_for=gallery.scoring_for,
    )  # fmt: skip
    encoders = [e for e in (pipe.teacher, pipe.student) if e is not None]
    used = [(e, thresholds.choice(e.cache_key, 16)) for e in encoders]
    files = {c.path: c for c in thresholds.book.calibrations}
    return thresholds, "; ".join(
        f"{e.name}: {'track' if choice.tracks else 'single-face'} open-set thresholds "
        f"from {choice.source.rsplit(' [', 1)[0]}"
        + _set_for(choice)
        + _scored(gallery, e)
        + _long(files.get(choice.source.rsplit(" [", 1)[0]))
        for e, choice in used
    ) + f"; this gallery holds {len(gallery)} identities"


def _long(calibration) -> str:
    """Whether long tracks also face the file's long-track thresholds."""
    if calibration is None or not calibration.openset_long:
        return ""
    return f", and for tracks of {calibration.long_track_faces}+ faces its long-track ones"


def _scored(gallery, encoder) -> str:
    """How the gallery scores this encoder's tracks, where not by cosine."""
    scoring = gallery.scoring_for(encoder.cache_key)
    return "" if scoring == "raw" else f", on {scoring}-normalized scores"


def _set_for(choice) -> str:
    """What gallery size a threshold choice was set for, and (where its file holds thresholds
    by watch-list size) which size it was picked for."""
    if choice.for_gallery:
        return f" (calibrated on a gallery of {choice.gallery_size}; {choice.for_gallery})"
    return f" (set for a gallery of {choice.gallery_size})" if choice.gallery_size else ""
