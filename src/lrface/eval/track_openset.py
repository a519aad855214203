"""Open-set thresholds for pooled video *tracks* (``lrface calibrate-watch``), set and measured
on synthetic CCTV clips of LFW people (``lrface.eval.video`` states how clips are made).

Why: ``lrface watch`` pools a track's faces into one embedding, which scores higher against its
own identity *and* against everyone else than a single face does, so an open-set threshold set
on single faces (``lrface.eval.openset``) does not hold its FPIR for tracks.

Conventions (those of ``lrface.eval.openset`` where they apply):

* People: everyone named in LFW View 2, split by ``lrface.eval.openset.assign_people`` (seed):
  half of the people with two or more photos are *enrolled*, everyone else is a *stranger*;
  every person is in half 0 (calibration) or half 1 (measurement).
* Gallery: ``people`` enrolled people of **half 1** (seeded order, skipping those with fewer
  than two photos where MTCNN finds a face), one template each from their first such photo
  (teacher, full resolution); their clips (their next three such photos at most) are the mated
  searches. With ``gallery`` larger than ``people`` the next enrolled people of half 1 fill
  the gallery to that size (enrolled, never filmed: a larger watch-list).
* Passers-by: ``calibration_passersby`` strangers of **half 0** (the threshold is set on their
  tracks) and ``passersby`` strangers of **half 1** (the measurement's non-mated searches);
  clips of up to three of their photos. No person of the measurement is a calibration
  passer-by; both search the same gallery.
* Every clip runs through the same ``FaceWatcher`` as ``lrface watch`` (MTCNN at
  ``min_face``, the configuration's encoders by face size, ``weighting``), searching every
  frame whole and keeping one-face tracks; per face-size bin the clip's track is the one with
  most faces in the bin, pooled from those faces (``run_clip``). A *search* is one such
  sub-track; a bin where a clip has no track is a search with no answer (no alarm, a miss).
* A track's threshold is looked up by its main encoder and the median native size of that
  encoder's faces (``lrface.video.watcher.track_probe``), snapped to the nearest of
  ``TRACK_SIZES`` on a log scale as ``ThresholdBook`` does. Per (encoder, size) the threshold
  is ``threshold_at_fpir`` over half 0's passer-by tracks of that key; keys with fewer than
  ``min_tracks`` tracks get none (the lookup then takes the nearest stored size).
* Measured on half 1, per bin and over all bins: FPIR = share of passer-by searches with a
  best score at or above their threshold; FNIR = share of probe searches not answered with the
  right identity at or above it. Also on *whole-clip* tracks (``WHOLE``: each clip's longest
  track pooled from all its faces, the one decision ``lrface watch`` makes for a person
  walking past), which never set a threshold: they show whether thresholds set on one size
  band hold for a track that spans several.

What the threshold depends on: the encoder(s) and face size (its keys); the gallery's size
(a passer-by's best score is a maximum over the gallery, so a larger watch-list raises more
false alarms at the same threshold: it holds for a gallery of about ``gallery_size``, stored
in the file; calibrate again for a very different size); and the recipe (camera, clip length,
weighting, detector), also stored in the file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from lrface.calibration import as_resolution, nearest_size
from lrface.eval.openset import threshold_at_fpir
from lrface.eval.video import Camera, ClipResult

WHOLE = "whole clip"
"""The label of whole-clip searches (measured, never calibrated on)."""

TRACK_SIZES = (16, 24, 32, 48)
"""Native sizes (chip side at one chip px per image px, about 4/3 of the face's box width) the
track thresholds are set at: the centres of the 10-14, 14-20, 20-28 and 28-40 px face bins."""


@dataclass(frozen=True)
class TrackRecipe:
    """Who is filmed and how (see the module docstring)."""

    people: int = 40
    gallery: int = 0
    passersby: int = 40
    calibration_passersby: int = 80
    frames: int = 32
    start_px: int = 40
    end_px: int = 10
    bins: tuple[float, ...] = (10, 14, 20, 28, 40)
    camera: Camera = field(default_factory=Camera)
    min_face: int = 12
    weighting: str = "size-score"
    seed: int = 0

    def bin_edges(self) -> list[tuple[float, float]]:
        return list(zip(self.bins[:-1], self.bins[1:], strict=True))

    def to_dict(self) -> dict:
        return asdict(self) | {"camera": self.camera.label()}


@dataclass
class TrackScore:
    """One search: a clip's main track in one face-size bin."""

    half: int
    mated: bool
    bin: str
    probe: tuple[str, int] | None
    """(encoder key, median native size) the threshold is looked up by; None: no track."""
    score: float
    """Best gallery score (-inf without a track)."""
    correct: bool
    """Top-1 is the clip's person (always False for a passer-by)."""


def track_scores(results: list[ClipResult], halves: list[int], weighting: str) -> list[TrackScore]:
    """Every (clip, bin) search of ``results`` (``run_clip``), clip ``i`` in ``halves[i]``."""
    out = []
    for result, half in zip(results, halves, strict=True):
        for label, entry in result.bins.items():
            top = entry.track_top.get(weighting)
            out.append(
                TrackScore(
                    half,
                    result.enrolled,
                    label,
                    entry.track_probe if top is not None else None,
                    float(top[1]) if top is not None else -np.inf,
                    top is not None and result.enrolled and top[0] == result.person,
                )
            )
    return out


def snap(size: int, sizes: tuple[int, ...] = TRACK_SIZES) -> int:
    """The track size a native size is calibrated at (nearest on a log scale)."""
    return int(nearest_size(as_resolution(size), list(sizes)))


def calibrate_tracks(
    scores: list[TrackScore],
    fpir: float,
    encoders: set[str] | None = None,
    min_tracks: int = 10,
    sizes: tuple[int, ...] = TRACK_SIZES,
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, int]]]:
    """``{encoder: {size: threshold}}`` at ``fpir`` from half 0's passer-by tracks (of
    ``encoders`` only, if given), and the number of tracks behind each threshold."""
    groups: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in scores:
        if s.half == 0 and not s.mated and s.probe is not None and s.bin != WHOLE:
            encoder, size = s.probe
            if encoders is None or encoder in encoders:
                groups[encoder][snap(size, sizes)].append(s.score)
    thresholds: dict[str, dict[int, float]] = {}
    counts: dict[str, dict[int, int]] = {}
    for encoder, by_size in groups.items():
        for size, values in sorted(by_size.items()):
            if len(values) >= min_tracks:
                thresholds.setdefault(encoder, {})[size] = threshold_at_fpir(values, fpir)
                counts.setdefault(encoder, {})[size] = len(values)
    return thresholds, counts


@dataclass
class Rates:
    """Achieved rates on one group of half-1 searches."""

    fpir: float
    fnir: float
    alarms: int
    passersby: int
    found: int
    probes: int

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}


def measure(
    scores: list[TrackScore], threshold: Callable[[str, int], float], half: int = 1
) -> dict[str, Rates]:
    """FPIR and FNIR of ``half``'s searches judged by ``threshold(encoder, native size)``, per
    bin, over all bins (``"all"``) and for whole-clip tracks (``WHOLE``)."""
    groups: dict[str, list[TrackScore]] = defaultdict(list)
    for s in scores:
        if s.half == half:
            groups[s.bin].append(s)
            if s.bin != WHOLE:
                groups["all"].append(s)
    out = {}
    for label, group in groups.items():
        passed = [s.probe is not None and s.score >= threshold(*s.probe) for s in group]
        non = [p for p, s in zip(passed, group, strict=True) if not s.mated]
        hits = [p and s.correct for p, s in zip(passed, group, strict=True) if s.mated]
        out[label] = Rates(
            float(np.mean(non)) if non else float("nan"),
            1.0 - float(np.mean(hits)) if hits else float("nan"),
            int(sum(non)),
            len(non),
            int(sum(hits)),
            len(hits),
        )
    return out


def calibration_file(
    encoder: str,
    gallery_encoder: str,
    thresholds: dict[int, float],
    counts: dict[int, int],
    fpir: float,
    gallery_size: int,
    recipe: TrackRecipe,
) -> dict:
    """A track calibration (``lrface.calibration.Calibration`` reads it) for one encoder."""
    return {
        "probes": "tracks",
        "gallery_encoder": gallery_encoder,
        "probe_encoder": encoder,
        "flip": False,
        "openset": {str(size): t for size, t in sorted(thresholds.items())},
        "openset_fpir": fpir,
        "tracks_per_size": {str(size): n for size, n in sorted(counts.items())},
        "gallery_size": gallery_size,
        "recipe": recipe.to_dict(),
    }
