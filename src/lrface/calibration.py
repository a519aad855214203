"""Decision thresholds for cosine scores: calibration files, and which threshold a face pair (or
a watch-list search) is judged by.

A calibration file is made for one *probe encoder* against one *gallery encoder* (for the
teacher both are the teacher; for a student the gallery is its teacher). ``lrface benchmark``
writes ``{"gallery_encoder", "probe_encoder", "view", "flip", "thresholds": {"hr-hr@full": t,
"hr-lr@16": t, "lr-lr@16": t, ...}}``; ``lrface calibrate-openset`` adds ``"openset": {"16": t,
..., "full": t}`` with the ``openset_fpir`` they were set at. A one-threshold file
``{"threshold": t, "encoder": name}`` is read too. A *track* calibration
(``"probes": "tracks"``, written by ``lrface calibrate-watch``, ``lrface.eval.track_openset``)
holds open-set thresholds for pooled video tracks rather than single faces; only
``lrface watch`` reads it (``ThresholdBook.openset(..., tracks=True)``). Its
``"openset_by_gallery_size": {"1": {"16": t, ...}, "3": {...}, ...}`` holds them for watch-lists
of several sizes (a stranger's best score is a maximum over the watch-list, so it grows with
it); a search is judged at its gallery's size, interpolated on log N between the stored sizes
(above the largest, the largest's). ``flip`` says whether
the embeddings were averaged with the mirrored face's; the pipeline embeds without flip, so a
flip calibration is refused (its thresholds sit higher). ``"scoring"`` (default ``raw``) names
the score normalization its open-set thresholds apply to (``lrface.search.normalize``); a
normalized file (``<name>-<scoring>.json`` beside the raw one, ``scoring_calibration_path``)
judges only searches scored that way, and verification always reads raw files.

Which threshold (``ThresholdBook``): every face has the encoder that served it and a
*resolution*, the side of the chip at which one chip pixel is one image pixel
(``lrface.detect.align.native_chip_size``; ``None`` when it is at least the 150 px chip, i.e.
full size). A resolution is judged at the calibrated size nearest to it on a log scale, full
size counting as 150 px; so a 14 px face is judged as a 16 px one *whoever served it*. The
protocol follows the number of low-resolution faces (0: ``hr-hr``, 1: ``hr-lr``, 2: ``lr-lr``
at the smaller size), and the file is the one whose probe encoder served the lower-resolution
face and whose gallery encoder served the other (``lr-lr``: its probe encoder served both).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lrface.constants import CHIP_SIZE

FULL_SIZE = CHIP_SIZE
"""Side of a full-resolution aligned chip; resolutions at or above it are full size."""

_MODELS = Path(__file__).parent / "models"

DEFAULT_SCORING = "asnorm"
"""How gallery searches are scored where the encoder has a stored cohort and a calibration
for it: adaptive S-norm (``lrface.search.normalize``), which lowered FNIR at FPIR 1% at every
size from 16 px up in the open-set protocol (docs/openset.md); ``raw`` (cosine) elsewhere."""


def calibration_path(encoder: str) -> Path | None:
    """The calibration stored with an encoder: ``<checkpoint dir>/calibration.json`` (written by
    ``lrface benchmark --encoder <dir> --no-flip``), a packaged pretrained student's
    ``models/pretrained/<name>/calibration.json``, or ``models/calibration/<name>.json``."""
    candidates = [
        Path(encoder) / "calibration.json",
        _MODELS / "pretrained" / encoder / "calibration.json",
        _MODELS / "calibration" / f"{encoder}.json",
    ]
    return next((p for p in candidates if p.is_file()), None)


def track_calibration_path(encoder: str, scoring: str = "raw") -> Path | None:
    """The track open-set calibration stored with an encoder (``track_calibration_target``),
    if there is one."""
    path = track_calibration_target(encoder, scoring)
    return path if path.is_file() else None


def track_calibration_target(encoder: str, scoring: str = "raw") -> Path:
    """Where an encoder's track calibration is stored: ``<checkpoint dir>/
    calibration-tracks.json``, else the packaged ``models/calibration/<name>-tracks.json`` (also
    for shipped students, whose own directories are hash-pinned); ``-tracks-<scoring>`` for
    thresholds set on normalized scores."""
    suffix = "" if scoring == "raw" else f"-{scoring}"
    if Path(encoder).is_dir():
        return Path(encoder) / f"calibration-tracks{suffix}.json"
    return _MODELS / "calibration" / f"{encoder}-tracks{suffix}.json"


def scoring_calibration_path(encoder: str, scoring: str) -> Path | None:
    """The single-face open-set calibration of ``encoder`` for normalized scores
    (``scoring_calibration_target``), if there is one."""
    path = scoring_calibration_target(encoder, scoring)
    return path if path.is_file() else None


def scoring_calibration_target(encoder: str, scoring: str) -> Path:
    """Where it is stored: ``<checkpoint dir>/calibration-<scoring>.json``, else the packaged
    ``models/calibration/<name>-<scoring>.json`` (shipped students' directories are pinned)."""
    if Path(encoder).is_dir():
        return Path(encoder) / f"calibration-{scoring}.json"
    return _MODELS / "calibration" / f"{encoder}-{scoring}.json"


def stored_calibrations(
    encoders: list[str | None], path_of: Callable[[str], Path | None] = calibration_path
) -> list[Calibration]:
    """The calibrations stored with these encoder names, in order (those that have one; each
    with ``owner`` set to its name): single-face ones by default, track ones with
    ``path_of=track_calibration_path``."""
    out = []
    for name in encoders:
        path = path_of(name) if name else None
        if path is not None:
            out.append(Calibration.load(path))
            out[-1].owner = name
    return out


def track_calibrations(encoders: list[str | None], scoring: str = "raw") -> list[Calibration]:
    """The track calibrations stored with these encoder names (those that have one), set on
    ``scoring``."""
    return stored_calibrations(encoders, lambda name: track_calibration_path(name, scoring))


def size_label(size: int | None) -> str:
    return "full" if size is None else str(size)


def as_resolution(chip_size: int) -> int | None:
    """A native chip side as a resolution: ``None`` (full size) from 150 px up."""
    return None if chip_size >= FULL_SIZE else int(chip_size)


def nearest_size(resolution: int | None, sizes: list[int | None]) -> int | None:
    """The size in ``sizes`` nearest to ``resolution`` on a log scale (None = full = 150 px)."""
    if not sizes:
        raise ValueError("no sizes to choose from")
    target = math.log(resolution or FULL_SIZE)
    return min(sizes, key=lambda s: (abs(math.log(s or FULL_SIZE) - target), s or FULL_SIZE))


def _sized(table) -> dict[int | None, float]:
    """``{"16": t, "full": t}`` as ``{16: t, None: t}``."""
    return {None if k == "full" else int(k): float(v) for k, v in dict(table).items()}


def for_gallery_size(
    ladder: dict[int, dict[int | None, float]], size: int | None, n: int
) -> tuple[float, str]:
    """The threshold at face ``size`` for a watch-list of ``n`` identities from ``{N: {size:
    threshold}}`` and a note saying how: linear in log N between the stored sizes around ``n``;
    under the smallest, the smallest's; above the largest, the largest's (too low there: more
    strangers reach it than the calibrated FPIR)."""
    sizes = sorted(ladder)
    if n in ladder:
        return ladder[n][size], f"for a gallery of {n}"
    if n > sizes[-1]:
        note = (
            f"for a gallery of {n}, above the largest calibrated size ({sizes[-1]}): its "
            "thresholds, which let more strangers through here"
        )
        return ladder[sizes[-1]][size], note
    if n < sizes[0]:
        return ladder[sizes[0]][size], f"for a gallery of {n}: the smallest calibrated size's"
    high = next(m for m in sizes if m > n)
    low = sizes[sizes.index(high) - 1]
    w = (math.log(n) - math.log(low)) / (math.log(high) - math.log(low))
    value = (1 - w) * ladder[low][size] + w * ladder[high][size]
    return value, f"for a gallery of {n}, interpolated between {low} and {high}"


@dataclass
class Calibration:
    """Thresholds of one file; ``gallery``/``probe`` are the encoder keys it was made with."""

    path: str
    gallery: str
    probe: str
    flip: bool | None
    threshold: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    openset: dict[int | None, float] = field(default_factory=dict)
    openset_fpir: float | None = None
    tracks: bool = False
    """Open-set thresholds set on pooled video tracks (``"probes": "tracks"``), not faces."""
    gallery_size: int | None = None
    """Enrolled identities the open-set thresholds were set against, where the file says."""
    openset_by_gallery: dict[int, dict[int | None, float]] = field(default_factory=dict)
    """Open-set thresholds per watch-list size (``{N: {size: threshold}}``), where the file has
    them."""
    owner: str | None = None
    """The encoder name this file is stored with (its probe side by that name too, so a shipped
    student whose weights were rounded after calibration still finds its file)."""
    scoring: str = "raw"
    """The score normalization its open-set thresholds apply to (``raw``: the cosine)."""
    openset_long: dict[int | None, float] = field(default_factory=dict)
    """Track calibrations: thresholds for long tracks (``long_track_faces`` faces or more), by
    size, where the file has them; ``openset_long_by_gallery`` by watch-list size too."""
    openset_long_by_gallery: dict[int, dict[int | None, float]] = field(default_factory=dict)
    long_track_faces: int | None = None

    @property
    def encoders(self) -> set[str]:
        return {self.gallery, self.probe}

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Read and check a calibration file (ValueError naming the file)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except IsADirectoryError:
            raise ValueError(f"{path}: is a directory, not a calibration file") from None
        except OSError as exc:
            raise ValueError(f"{path}: cannot read calibration file ({exc.strerror})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: calibration file is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: calibration file must hold a JSON object")
        probe = data.get("probe_encoder", data.get("encoder"))
        gallery = data.get("gallery_encoder", probe)
        if probe is None:
            raise ValueError(f"{path}: calibration file does not say which encoder it is for")
        single = data.get("threshold")
        table = data.get("thresholds", {})
        openset = data.get("openset", {})
        if single is None and not table and not openset:
            raise ValueError(f"{path}: calibration file has neither 'threshold' nor 'thresholds'")
        try:
            single = None if single is None else float(single)
            table = {str(k): float(v) for k, v in dict(table).items()}
            openset = _sized(openset)
            ladder = {
                int(n): _sized(v) for n, v in dict(data.get("openset_by_gallery_size", {})).items()
            }
            fpir = data.get("openset_fpir")
            fpir = None if fpir is None else float(fpir)
            long = _sized(data.get("openset_long", {}))
            long_ladder = {
                int(n): _sized(v)
                for n, v in dict(data.get("openset_long_by_gallery_size", {})).items()
            }
            long_faces = data.get("long_track_faces")
            long_faces = None if long_faces is None else int(long_faces)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: calibration thresholds must be numbers") from None
        flip = data.get("flip")
        kind = data.get("probes", "faces")
        if kind not in ("faces", "tracks"):
            raise ValueError(f"{path}: 'probes' must be 'faces' or 'tracks', got {kind!r}")
        if kind == "tracks" and not openset:
            raise ValueError(f"{path}: track calibration has no 'openset' thresholds")
        size = data.get("gallery_size")
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"{path}: 'gallery_size' must be a positive integer, got {size!r}")
        if any(n < 1 or set(v) != set(openset) for n, v in ladder.items()):
            raise ValueError(
                f"{path}: 'openset_by_gallery_size' needs positive sizes, each with the sizes of "
                "'openset'"
            )
        if long and (kind != "tracks" or long_faces is None or long_faces < 1):
            raise ValueError(
                f"{path}: 'openset_long' belongs to a track calibration with 'long_track_faces'"
            )
        if any(n < 1 or set(v) != set(long) for n, v in long_ladder.items()):
            raise ValueError(
                f"{path}: 'openset_long_by_gallery_size' needs positive sizes, each with the "
                "sizes of 'openset_long'"
            )
        tracks = kind == "tracks"
        scoring = data.get("scoring", "raw")
        if not isinstance(scoring, str):
            raise ValueError(f"{path}: 'scoring' must be a name, got {scoring!r}")
        return cls(
            str(path), str(gallery), str(probe), flip, single, table, openset, fpir, tracks, size,
            ladder, scoring=scoring, openset_long=long, openset_long_by_gallery=long_ladder,
            long_track_faces=long_faces,
        )  # fmt: skip

    def check_flip(self, flip: bool = False) -> None:
        """ValueError when the file's embeddings were made with a different ``flip``."""
        if self.flip is not None and bool(self.flip) != flip:
            made, used = ("with", "without") if self.flip else ("without", "with")
            raise ValueError(
                f"{self.path}: calibration was measured on embeddings made {made} flip averaging "
                f"but faces here are embedded {used}; its thresholds do not apply (use a "
                f"calibration from `lrface benchmark {'--no-flip' if not flip else '--flip'}`)"
            )

    def sizes(self, protocol: str) -> dict[int | None, str]:
        """``{size: key}`` of this protocol's thresholds (None = full)."""
        out: dict[int | None, str] = {}
        for key in self.thresholds:
            name, _, label = key.partition("@")
            if name == protocol:
                out[None if label == "full" else int(label)] = key
        return out


@dataclass
class FaceRef:
    """What a threshold depends on: the encoder that served a face and its resolution."""

    encoder: str
    resolution: int | None


@dataclass
class Choice:
    """A threshold, the file and key it came from, and why that one."""

    threshold: float
    source: str
    reason: str
    tracks: bool = False
    """Set on pooled video tracks (a track calibration), not on single faces."""
    gallery_size: int | None = None
    """Enrolled identities it was set against, where its file says."""
    for_gallery: str | None = None
    """For which watch-list size it was picked and how, where its file has thresholds by
    watch-list size (``for_gallery_size``)."""


def _sized_value(
    table: dict[int | None, float],
    ladder: dict[int, dict[int | None, float]],
    size: int | None,
    gallery_size: int | None,
) -> tuple[float, str | None]:
    """The threshold at ``size`` for a watch-list of ``gallery_size`` where ``ladder`` has
    thresholds by watch-list size (and how it was picked), else the file's own."""
    if gallery_size is not None and ladder:
        return for_gallery_size(ladder, size, gallery_size)
    return table[size], None


class ThresholdBook:
    """Calibrations by encoder; picks the threshold for a pair or an open-set search.

    ``aliases`` maps each encoder key faces carry to every name it is known by (registered
    name, checkpoint path, cache key), so a file that names any of them applies. Files listed
    first win.
    """

    def __init__(self, calibrations: list[Calibration], aliases: dict[str, set[str]] | None = None):
        self.calibrations = calibrations
        self.aliases = aliases or {}

    def _names(self, encoder: str) -> set[str]:
        return {encoder} | self.aliases.get(encoder, set())

    def _probe_of(self, calib: Calibration, encoder: str) -> bool:
        names = self._names(encoder)
        return calib.probe in names or (calib.owner is not None and calib.owner in names)

    def _files(self, probe: str, gallery: str | None, scoring: str = "raw") -> list[Calibration]:
        return [
            c
            for c in self.calibrations
            if self._probe_of(c, probe)
            and (gallery is None or c.gallery in self._names(gallery))
            and c.scoring == scoring
        ]

    def _missing(self, what: str, probe: str, gallery: str | None) -> ValueError:
        made = f"probe encoder {probe}" + (
            "" if gallery is None else f" and gallery encoder {gallery}"
        )
        have = ", ".join(f"{c.path} ({c.probe} vs {c.gallery})" for c in self.calibrations)
        return ValueError(
            f"no {what} calibration for {made} (have: {have or 'none'}); give --calibration "
            "or --threshold"
        )

    def pair(self, a: FaceRef, b: FaceRef) -> Choice:
        """The verification threshold for faces ``a`` and ``b``."""
        low, high = sorted((a, b), key=lambda f: f.resolution or FULL_SIZE)
        same_encoder = high.encoder in self._names(low.encoder)
        if low.resolution is None:  # both full size: any file's hr-hr is its gallery encoder's
            files = [
                c
                for c in self.calibrations
                if c.gallery in self._names(a.encoder)
                and c.gallery in self._names(b.encoder)
                and c.scoring == "raw"
            ]
        else:
            files = self._files(low.encoder, high.encoder) or self._files(low.encoder, None)
        if not files:
            raise self._missing("verification", low.encoder, high.encoder)
        calib = files[0]
        if calib.threshold is not None:
            return Choice(calib.threshold, f"{calib.path} [threshold]", "its single threshold")
        sizes = [s for p in ("hr-lr", "lr-lr") for s in calib.sizes(p)] + [None]
        snapped = [nearest_size(f.resolution, sizes) for f in (a, b)]
        lr = sorted(s for s in snapped if s is not None)
        protocol = {0: "hr-hr", 1: "hr-lr", 2: "lr-lr"}[len(lr)]
        key = f"{protocol}@{size_label(lr[0] if lr else None)}"
        if key not in calib.thresholds:
            raise ValueError(f"{calib.path}: no '{key}' threshold in the calibration")
        faces = " and ".join(f"{f.resolution} px" if f.resolution else "full size" for f in (a, b))
        judged = size_label(lr[0] if lr else None)
        reason = f"face resolutions {faces}: {protocol} at {judged}"
        if len(lr) == 2 and not same_encoder:
            reason += f"; {high.encoder} served the other face, judged as if {low.encoder} had"
        elif len(lr) < 2 and calib.gallery not in self._names(high.encoder):
            reason += f"; {high.encoder} served the larger face, not {calib.gallery}"
        return Choice(calib.thresholds[key], f"{calib.path} [{key}]", reason)

    def openset(
        self,
        probe: FaceRef,
        gallery_encoder: str,
        tracks: bool = False,
        gallery_size: int | None = None,
        scoring: str = "raw",
        faces: int | None = None,
    ) -> Choice:
        """The open-set (watch-list) threshold for a probe searched in a gallery of
        ``gallery_encoder`` templates: under it, the answer is *unknown*. ``tracks``: the probe
        is a pooled video track, judged by a track calibration of its encoder when there is
        one, else by the single-face one; single faces never get a track threshold.
        ``gallery_size``: the gallery's identities, for files with thresholds by watch-list
        size (``for_gallery_size``); without it, the file's own ``openset``. ``scoring``: the
        normalization the search's scores went through; only files set on it apply.
        ``faces``: the faces a track pooled; at the file's ``long_track_faces`` or more, the
        track must also clear the file's long-track threshold where it has one (the higher of
        the two applies)."""
        files = self._files(probe.encoder, gallery_encoder, scoring)
        ordered = [c for c in files if c.tracks] if tracks else []
        for calib in ordered + [c for c in files if not c.tracks]:
            if not calib.openset:
                continue
            size = nearest_size(probe.resolution, list(calib.openset))
            label = size_label(probe.resolution)
            kind = "track" if calib.tracks else "single-face"
            reason = (
                f"probe {label + ' px' if probe.resolution else 'full size'} ({probe.encoder}): "
                f"{kind} open-set threshold at {size_label(size)}"
                + ("" if calib.openset_fpir is None else f", FPIR {calib.openset_fpir:g}")
                + ("" if scoring == "raw" else f", {scoring}-normalized scores")
            )
            key = f"openset@{size_label(size)}"
            value, for_gallery = _sized_value(calib.openset, calib.openset_by_gallery, size,
                                              gallery_size)  # fmt: skip
            if for_gallery is not None:
                key += f", N={gallery_size}"
                reason += f", {for_gallery}"
            long = calib.long_track_faces
            if calib.openset_long and faces is not None and long is not None and faces >= long:
                # a long track clears its length's threshold as well as its size's
                at = nearest_size(probe.resolution, list(calib.openset_long))
                longer, _ = _sized_value(calib.openset_long, calib.openset_long_by_gallery, at,
                                         gallery_size)  # fmt: skip
                if longer > value:
                    value = longer
                    watch_list = "" if for_gallery is None else f", N={gallery_size}"
                    key = f"long@{size_label(at)}{watch_list}"
                    reason += f"; a long track ({faces} faces): its own, higher threshold"
            source = f"{calib.path} [{key}]"
            return Choice(value, source, reason, calib.tracks, calib.gallery_size, for_gallery)
        what = "open-set" if scoring == "raw" else f"{scoring} open-set"
        raise self._missing(what, probe.encoder, gallery_encoder)
