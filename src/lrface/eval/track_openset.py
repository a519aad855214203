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
  Each clip's *whole-clip* track (``WHOLE``: its longest track pooled from all its faces, the
  one decision ``lrface watch`` makes for a person walking past) is one more search.
* A track's threshold is looked up by its main encoder and the median native size of that
  encoder's faces (``lrface.video.watcher.track_probe``), snapped to the nearest of
  ``TRACK_SIZES`` on a log scale as ``ThresholdBook`` does. Per (encoder, size) the threshold
  is ``threshold_at_fpir`` over half 0's passer-by tracks of that key: their size-bin tracks
  and, with ``whole`` (``lrface calibrate-watch``'s default; measured better on whole-clip
  tracks, no worse on bins), their whole-clip tracks; keys with fewer than ``min_tracks``
  tracks get none (the lookup then takes the nearest stored size).
* Long tracks (``LONG_TRACK_FACES`` faces or more; in this protocol the whole-clip tracks, about
  26 faces, where size-bin tracks pool about 8): thresholds of their own, set the same way on
  half 0's whole-clip passer-by tracks alone (``long=True``), where a key has at least
  ``min_tracks`` of them and one alarm to spare at the target (``enough_for``: 100 tracks at
  FPIR 0.01). A long track must clear both its size's threshold and its length's
  (``ThresholdBook.openset(faces=...)``); measured, a whole-clip search is judged as a long
  track and a size-bin one as a track of unknown length (``search_faces``).
* Watch-lists of other sizes (``threshold_ladder``): every search keeps its scores against
  *every* gallery identity. For a watch-list of N people a passer-by's best score is the
  maximum over N identities; its distribution is that of the maximum over a random N-subset of
  the calibration gallery, computed exactly (hypergeometric: the chance that a subset of N
  misses all of a search's scores at or above t), not sampled. The threshold for N is the
  smallest at which the expected share of alarms is at most the target FPIR; at N = the whole
  gallery it is the plain threshold. Thresholds are stored for a ladder of sizes
  (``GALLERY_SIZES`` under the gallery's size, and the gallery's size); ``ThresholdBook``
  interpolates on log N. **Assumption**: the calibration gallery's people (LFW, one full-size
  template each) stand in for the user's; a watch-list of people who look more alike than
  random LFW people raises more alarms than this predicts.
* Measured on half 1, per bin, over all bins and on whole-clip tracks apart: FPIR = share of
  passer-by searches with a best score at or above their threshold; FNIR = share of probe
  searches not answered with the right identity at or above it.
* Sub-galleries (``measure_subgalleries``): half 1's searches judged as if the gallery held
  only N of its people: per search ``draws`` random N-subsets (seeded; a probe's own person
  always in it), a passer-by's alarm is the subset's best score at or above the threshold, a
  probe is found when its own person beats the rest of the subset and reaches the threshold;
  rates are averaged over the draws. This checks the ladder on other people than it was set
  on; it shares its assumption (sub-galleries of the same LFW people).

What the threshold depends on: the encoder(s) and face size (its keys); the gallery's size
(the ladder above; above the largest calibrated size the largest's thresholds are too low);
and the recipe (camera, clip length, weighting, detector), stored in the file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from lrface.calibration import as_resolution, nearest_size
from lrface.constants import LONG_TRACK_FACES
from lrface.eval.openset import threshold_at_fpir
from lrface.eval.video import Camera, ClipResult

WHOLE = "whole clip"
"""The label of whole-clip searches (measured, never calibrated on)."""

GALLERY_SIZES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)
"""Watch-list sizes the thresholds are stored for (those under the calibration gallery's size,
then that size)."""

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
    gallery_scores: np.ndarray | None = field(default=None, compare=False)
    """Scores against every gallery identity, in the gallery's order (None without a track)."""
    own: int = -1
    """The clip's person's index in the gallery (-1: a passer-by)."""


def track_scores(
    results: list[ClipResult],
    halves: list[int],
    weighting: str,
    templates: np.ndarray | None = None,
    names: list[str] | None = None,
    rescore: Callable[[np.ndarray, tuple[str, int]], np.ndarray] | None = None,
) -> list[TrackScore]:
    """Every (clip, bin) search of ``results`` (``run_clip``), clip ``i`` in ``halves[i]``;
    with the gallery's unit ``templates`` (rows in the order of ``names``) also each search's
    scores against every identity. ``rescore``: the scores against every identity of a track
    embedding and its probe (encoder, native size) instead of the cosine (a normalized
    scoring, ``lrface.search.normalize``); best score and top-1 then follow from them."""
    out = []
    index = {name: i for i, name in enumerate(names or [])}
    for result, half in zip(results, halves, strict=True):
        for label, entry in result.bins.items():
            top = entry.track_top.get(weighting)
            every = None
            if templates is not None and top is not None and entry.track_embedding is not None:
                every = templates.astype(np.float64) @ entry.track_embedding.astype(np.float64)
                if rescore is not None:
                    every = rescore(entry.track_embedding, entry.track_probe)
                    best = int(np.argmax(every))
                    top = (names[best], float(every[best]))
            out.append(
                TrackScore(
                    half,
                    result.enrolled,
                    label,
                    entry.track_probe if top is not None else None,
                    float(top[1]) if top is not None else -np.inf,
                    top is not None and result.enrolled and top[0] == result.person,
                    every,
                    index.get(result.person, -1) if result.enrolled else -1,
                )
            )
    return out


def snap(size: int, sizes: tuple[int, ...] = TRACK_SIZES) -> int:
    """The track size a native size is calibrated at (nearest on a log scale)."""
    return int(nearest_size(as_resolution(size), list(sizes)))


def search_faces(s: TrackScore) -> int | None:
    """The track length a search is judged as: whole-clip tracks are long (``LONG_TRACK_FACES``;
    they pool about 26 faces), size-bin ones are not (None: the regular thresholds)."""
    return LONG_TRACK_FACES if s.bin == WHOLE else None


def enough_for(tracks: int, fpir: float, long: bool) -> bool:
    """Whether ``tracks`` passer-by tracks can set a long-track threshold at ``fpir``: at least
    one alarm allowed, or the threshold would only sit above the highest of a few scores (80
    whole-clip tracks cannot estimate FPIR 0.01). Regular thresholds keep their rule."""
    return not long or tracks * fpir >= 1


def _calibration_groups(
    scores: list[TrackScore],
    encoders: set[str] | None,
    sizes: tuple[int, ...],
    whole: bool,
    long: bool = False,
) -> dict[str, dict[int, list[TrackScore]]]:
    """Half 0's passer-by tracks by encoder and snapped size: size-bin ones (and whole-clip
    ones if ``whole``), or with ``long`` the whole-clip ones alone."""
    groups: dict[str, dict[int, list[TrackScore]]] = defaultdict(lambda: defaultdict(list))
    for s in scores:
        kept = s.bin == WHOLE if long else (whole or s.bin != WHOLE)
        if s.half == 0 and not s.mated and s.probe is not None and kept:
            encoder, size = s.probe
            if encoders is None or encoder in encoders:
                groups[encoder][snap(size, sizes)].append(s)
    return groups


def calibrate_tracks(
    scores: list[TrackScore],
    fpir: float,
    encoders: set[str] | None = None,
    min_tracks: int = 10,
    sizes: tuple[int, ...] = TRACK_SIZES,
    whole: bool = False,
    long: bool = False,
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, int]]]:
    """``{encoder: {size: threshold}}`` at ``fpir`` from half 0's passer-by tracks (of
    ``encoders`` only, if given; with ``whole`` their whole-clip tracks too; with ``long``
    the whole-clip tracks alone, for long tracks), and the number of tracks behind each
    threshold."""
    thresholds: dict[str, dict[int, float]] = {}
    counts: dict[str, dict[int, int]] = {}
    for encoder, by_size in _calibration_groups(scores, encoders, sizes, whole, long).items():
        for size, group in sorted(by_size.items()):
            if len(group) >= min_tracks and enough_for(len(group), fpir, long):
                values = [s.score for s in group]
                thresholds.setdefault(encoder, {})[size] = threshold_at_fpir(values, fpir)
                counts.setdefault(encoder, {})[size] = len(group)
    return thresholds, counts


def subset_fpir(gallery_scores: np.ndarray, threshold: float, n: int) -> float:
    """Expected share of searches (rows: scores against every identity of a gallery of G) whose
    best score over a random ``n``-subset of the identities is at or above ``threshold``."""
    from scipy.stats import hypergeom

    rows = np.atleast_2d(gallery_scores)
    reached = (rows >= threshold).sum(1)
    # P(the n drawn identities include none of the ``reached`` ones)
    return float(np.mean(1.0 - hypergeom.pmf(0, rows.shape[1], reached, n)))


def ladder_threshold(gallery_scores: np.ndarray, fpir: float, n: int) -> float:
    """The smallest threshold at which ``subset_fpir`` is at most ``fpir`` for watch-lists of
    ``n`` of the gallery's identities (at ``n`` = G: ``threshold_at_fpir`` of the row maxima)."""
    rows = np.atleast_2d(np.asarray(gallery_scores, np.float64))
    if not 1 <= n <= rows.shape[1]:
        raise ValueError(f"watch-list size {n} is not in 1..{rows.shape[1]} (the gallery's)")
    if not 0 <= fpir < 1:
        raise ValueError(f"target FPIR must be in [0, 1), got {fpir}")
    # candidates: just above each score (alarms are scores at or above the threshold)
    candidates = np.nextafter(np.unique(rows), np.inf)
    low, high = 0, len(candidates) - 1  # the highest candidate lets nothing through
    while low < high:
        mid = (low + high) // 2
        if subset_fpir(rows, candidates[mid], n) <= fpir + 1e-12:
            high = mid
        else:
            low = mid + 1
    return float(candidates[low])


def ladder_sizes(gallery_size: int, sizes: tuple[int, ...] = GALLERY_SIZES) -> list[int]:
    """The watch-list sizes stored for a calibration gallery of ``gallery_size``."""
    return [n for n in sizes if n < gallery_size] + [gallery_size]


def threshold_ladder(
    scores: list[TrackScore],
    fpir: float,
    encoders: set[str] | None = None,
    min_tracks: int = 10,
    sizes: tuple[int, ...] = TRACK_SIZES,
    whole: bool = False,
    gallery_sizes: tuple[int, ...] = GALLERY_SIZES,
    long: bool = False,
) -> dict[str, dict[int, dict[int, float]]]:
    """``{encoder: {watch-list size N: {size: threshold}}}`` at ``fpir`` from the same tracks as
    ``calibrate_tracks``, for every N of ``ladder_sizes`` (the module docstring)."""
    out: dict[str, dict[int, dict[int, float]]] = {}
    for encoder, by_size in _calibration_groups(scores, encoders, sizes, whole, long).items():
        for size, group in sorted(by_size.items()):
            if len(group) < min_tracks or not enough_for(len(group), fpir, long):
                continue
            rows = np.stack([s.gallery_scores for s in group])
            for n in ladder_sizes(rows.shape[1], gallery_sizes):
                threshold = ladder_threshold(rows, fpir, n)
                out.setdefault(encoder, {}).setdefault(n, {})[size] = threshold
    return out


@dataclass
class Rates:
    """Achieved rates on one group of half-1 searches."""

    fpir: float
    fnir: float
    alarms: float
    """Passer-by searches that raised an alarm (an expected count over sub-gallery draws)."""
    passersby: int
    found: float
    """Probe searches answered right (an expected count over sub-gallery draws)."""
    probes: int

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}


def measure(
    scores: list[TrackScore], threshold: Callable[[str, int, int | None], float], half: int = 1
) -> dict[str, Rates]:
    """FPIR and FNIR of ``half``'s searches judged by ``threshold(encoder, native size, faces)``
    (``search_faces``), per bin, over all bins (``"all"``) and for whole-clip tracks
    (``WHOLE``)."""

    def judge(s: TrackScore) -> tuple[float, float]:
        passed = s.probe is not None and s.score >= threshold(*s.probe, search_faces(s))
        return float(passed), float(passed and s.correct)

    return _rates_by_group(scores, half, judge, int)


def measure_subgalleries(
    scores: list[TrackScore],
    threshold: Callable[[str, int, int | None], float],
    n: int,
    draws: int = 200,
    seed: int = 0,
    half: int = 1,
) -> dict[str, Rates]:
    """FPIR and FNIR of ``half``'s searches as if the gallery held ``n`` of its identities
    (``draws`` random subsets per search, a probe's own person always in; the module
    docstring), judged by ``threshold(encoder, native size, faces)``; groups as ``measure``. Alarms
    and finds are expected counts (averaged over the draws)."""
    rng = np.random.default_rng(seed)

    def judge(s: TrackScore) -> tuple[float, float]:
        passed = found = 0.0
        if s.probe is not None and s.gallery_scores is not None:
            every = s.gallery_scores
            if len(every) < n:
                raise ValueError(f"a sub-gallery of {n} is larger than the gallery ({len(every)})")
            t = threshold(*s.probe, search_faces(s))
            if s.mated:
                others = np.delete(every, s.own)
                keys = rng.random((draws, len(others))).argsort(1)[:, : n - 1]
                rivals = others[keys].max(1) if n > 1 else np.full(draws, -np.inf)
                found = float(np.mean((every[s.own] >= t) & (every[s.own] > rivals)))
            else:
                keys = rng.random((draws, len(every))).argsort(1)[:, :n]
                passed = float(np.mean(every[keys].max(1) >= t))
        return passed, found

    return _rates_by_group(scores, half, judge, float)


def _rates_by_group(
    scores: list[TrackScore],
    half: int,
    judge: Callable[[TrackScore], tuple[float, float]],
    count: Callable[[float], float],
) -> dict[str, Rates]:
    """``Rates`` of ``half``'s searches per bin, over all bins (``"all"``) and for whole-clip
    tracks (``WHOLE``); ``judge`` gives each search's (alarm, find) in [0, 1] (a passer-by
    passing the threshold, a probe found at rank 1 above it); ``count`` types the totals."""
    groups: dict[str, list[tuple[bool, float, float]]] = defaultdict(list)
    for s in scores:
        if s.half != half:
            continue
        verdict = (s.mated, *judge(s))
        groups[s.bin].append(verdict)
        if s.bin != WHOLE:
            groups["all"].append(verdict)
    out = {}
    for label, group in groups.items():
        non = [p for mated, p, _ in group if not mated]
        hits = [f for mated, _, f in group if mated]
        out[label] = Rates(
            float(np.mean(non)) if non else float("nan"),
            1.0 - float(np.mean(hits)) if hits else float("nan"),
            count(sum(non)),
            len(non),
            count(sum(hits)),
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
    recipe: dict,
    ladder: dict[int, dict[int, float]] | None = None,
    whole: bool = False,
    scoring: str = "raw",
    long: tuple[dict[int, float], dict[int, int], dict[int, dict[int, float]]] | None = None,
) -> dict:
    """A track calibration (``lrface.calibration.Calibration`` reads it) for one encoder;
    ``recipe``: ``TrackRecipe.to_dict()``; ``ladder``: ``{watch-list size: {size: threshold}}``
    (``threshold_ladder``); ``whole``: whole-clip tracks were calibrated on too; ``scoring``:
    the scores the thresholds apply to (``lrface.search.normalize``); ``long``: thresholds,
    counts and ladder set on whole-clip tracks alone, for tracks of ``LONG_TRACK_FACES`` faces
    or more."""
    data = {
        "probes": "tracks",
        "gallery_encoder": gallery_encoder,
        "probe_encoder": encoder,
        "flip": False,
        "openset": {str(size): t for size, t in sorted(thresholds.items())},
        "openset_fpir": fpir,
        "tracks_per_size": {str(size): n for size, n in sorted(counts.items())},
        "gallery_size": gallery_size,
        "calibrated_on": "size-bin and whole-clip tracks" if whole else "size-bin tracks",
        "recipe": recipe,
    }
    if scoring != "raw":
        data["scoring"] = scoring
    if ladder:
        data["openset_by_gallery_size"] = _by_gallery_size(ladder)
    if long is not None and long[0]:
        thresholds_long, counts_long, ladder_long = long
        data["long_track_faces"] = LONG_TRACK_FACES
        data["openset_long"] = {str(size): t for size, t in sorted(thresholds_long.items())}
        data["tracks_per_size_long"] = {str(size): n for size, n in sorted(counts_long.items())}
        if ladder_long:
            data["openset_long_by_gallery_size"] = _by_gallery_size(ladder_long)
    return data


def _by_gallery_size(ladder: dict[int, dict[int, float]]) -> dict[str, dict[str, float]]:
    return {
        str(n): {str(size): t for size, t in sorted(by_size.items())}
        for n, by_size in sorted(ladder.items())
    }
