"""Score normalization against a cohort: how far a score stands above what this probe and this
enrolled identity score against faces of nobody on the list.

A raw cosine is not comparable from search to search: a blurry 16 px probe scores high with
everyone, and some enrolled faces attract strangers more than others. Biometric systems
therefore judge a score by its two *impostor distributions*, measured against a cohort of
faces of other people (``lrface.models.cohort``):

* the **probe side**: the probe against the *gallery-side* cohort (teacher embeddings of
  full-size faces, what enrolled templates are);
* the **gallery side**: an enrolled template against the *probe-side* cohort of the probe's
  kind (the same encoder and resolution band as the probe: what a stranger's probe looks like).

Methods (``METHODS``), each a function of the raw score and the two sides' statistics:

* ``raw``: the cosine;
* ``znorm``: ``(s - mean_g) / std_g`` over the gallery side's scores with the whole cohort;
* ``tnorm``: ``(s - mean_p) / std_p`` over the probe side's scores with the whole cohort;
* ``snorm``: the average of both;
* ``asnorm``: *adaptive* S-norm (Matějka et al., Interspeech 2017): the same average, each side
  standardized by its ``top_k`` highest cohort scores only (the strangers that resemble it);
* ``centre``: no statistics; both embeddings minus their side's cohort mean, renormalized, then
  the cosine (a cheap whitening).

T-norm is an affine map per probe, so it never reorders a probe's candidates; the gallery side
(Z, S and AS-norm) can. Gallery-side statistics are computed once per identity at enrolment
(``SideStats`` per band, stored beside the identity), probe-side ones per search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrface.search.cohort import Cohort

METHODS = ("raw", "centre", "znorm", "tnorm", "snorm", "asnorm")
"""Every scoring, cheapest first."""

STAT_METHODS = ("znorm", "tnorm", "snorm", "asnorm")
"""The ones that standardize by cohort score statistics."""

DEFAULT_TOP_K = 100
"""Adaptive S-norm's cohort size per side (of a cohort of some thousands)."""

MIN_STD = 1e-3
"""Floor of a standard deviation, so a degenerate side cannot blow a score up."""


@dataclass
class SideStats:
    """Cohort score statistics of some embeddings (one row each): mean and standard deviation
    over the whole cohort (Z/T/S-norm) and over its ``top_k`` highest scores (AS-norm)."""

    mean: np.ndarray
    std: np.ndarray
    top_mean: np.ndarray
    top_std: np.ndarray
    top_k: int

    def rows(self, index: np.ndarray) -> SideStats:
        return SideStats(
            self.mean[index], self.std[index], self.top_mean[index], self.top_std[index], self.top_k
        )

    def as_array(self) -> np.ndarray:
        """``N x 4`` float32 (mean, std, top mean, top std), as stored."""
        return np.stack([self.mean, self.std, self.top_mean, self.top_std], 1).astype(np.float32)

    @classmethod
    def from_array(cls, values: np.ndarray, top_k: int) -> SideStats:
        values = np.asarray(values, np.float64).reshape(-1, 4)
        return cls(values[:, 0], values[:, 1], values[:, 2], values[:, 3], top_k)


def side_stats(
    embeddings: np.ndarray, cohort: np.ndarray, top_k: int = DEFAULT_TOP_K, chunk: int = 1024
) -> SideStats:
    """Statistics of each row's cosine scores with every cohort row (unit vectors)."""
    embeddings = np.asarray(embeddings, np.float32).reshape(-1, cohort.shape[1])
    cohort = np.asarray(cohort, np.float32)
    k = max(1, min(top_k, len(cohort)))
    out = np.zeros((len(embeddings), 4), np.float64)
    for start in range(0, len(embeddings), chunk):
        scores = embeddings[start : start + chunk] @ cohort.T
        top = np.partition(scores, len(cohort) - k, axis=1)[:, -k:]
        out[start : start + chunk] = np.stack(
            [scores.mean(1), scores.std(1), top.mean(1), top.std(1)], 1
        )
    return SideStats.from_array(out, k)


def centred(embeddings: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Rows minus ``mean``, rescaled to unit length (``centre``)."""
    out = np.asarray(embeddings, np.float32) - np.asarray(mean, np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def normalize_scores(
    raw: np.ndarray, method: str, probe: SideStats | None, gallery: SideStats | None
) -> np.ndarray:
    """Normalized scores of a ``P x G`` raw score matrix: row ``i`` is probe ``i`` (stats row
    ``i`` of ``probe``), column ``j`` gallery entry ``j`` (row ``j`` of ``gallery``).
    ``raw`` and ``centre`` return ``raw`` (centring acts on the embeddings, ``centred``)."""
    raw = np.asarray(raw, np.float64)
    if method in ("raw", "centre"):
        return raw
    if method not in STAT_METHODS:
        raise ValueError(f"unknown score normalization {method!r}; one of {METHODS}")
    if probe is None or gallery is None:
        raise ValueError(f"{method} needs probe-side and gallery-side cohort statistics")
    adaptive = method == "asnorm"
    p_mean, p_std = (probe.top_mean, probe.top_std) if adaptive else (probe.mean, probe.std)
    g_mean, g_std = (gallery.top_mean, gallery.top_std) if adaptive else (gallery.mean, gallery.std)
    t = (raw - p_mean[:, None]) / np.maximum(p_std, MIN_STD)[:, None]
    z = (raw - g_mean[None, :]) / np.maximum(g_std, MIN_STD)[None, :]
    if method == "tnorm":
        return t
    if method == "znorm":
        return z
    return 0.5 * (t + z)


@dataclass
class Normalizer:
    """A scoring ``method`` against cohorts, one per probe encoder (``cohorts`` keyed by every
    name the encoder goes by: its cache key and its name). A probe whose encoder has no cohort
    is scored raw (``covers``)."""

    method: str
    cohorts: dict[str, Cohort]
    top_k: int = DEFAULT_TOP_K

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown score normalization {self.method!r}; one of {METHODS}")
        if self.method == "centre":
            raise ValueError("centring is measured by the open-set protocol, not served")

    def covers(self, encoder: str) -> bool:
        return self.method != "raw" and encoder in self.cohorts

    def stats_key(self, encoder: str) -> str:
        """What gallery-side statistics against ``encoder``'s cohort are stored under: the
        cohort's encoder, its content and ``top_k`` (a new cohort invalidates them)."""
        cohort = self.cohorts[encoder]
        return f"{cohort.encoder}@{cohort.digest[:12]}/k{self.top_k}"

    def encoders(self) -> dict[str, Cohort]:
        """One entry per distinct cohort (by stats key)."""
        return {self.stats_key(name): c for name, c in self.cohorts.items()}

    def probe_stats(self, queries: np.ndarray, encoder: str) -> SideStats:
        """The probe side: the queries against the gallery-side cohort of their encoder."""
        return side_stats(queries, self.cohorts[encoder].gallery, self.top_k)

    def gallery_stats(self, templates: np.ndarray, cohort: Cohort) -> np.ndarray:
        """The gallery side of each template against every band of ``cohort``: ``N x bands x
        4`` (``SideStats.as_array`` per band, in ``cohort.bands`` order), stored at enrolment."""
        return np.stack(
            [side_stats(templates, rows, self.top_k).as_array() for rows in cohort.bands.values()],
            1,
        )

    def score(self, raw: np.ndarray, probe: SideStats, stored: np.ndarray, band: int) -> np.ndarray:
        """Normalized scores of ``P x G`` raw scores, the gallery side read from ``stored``
        (``G x bands x 4``) at the probe's ``band`` index."""
        gallery = SideStats.from_array(stored[:, band], self.top_k)
        return normalize_scores(raw, self.method, probe, gallery)


def stored_normalizer(
    method: str, encoders: list[str | None], top_k: int = DEFAULT_TOP_K
) -> Normalizer | None:
    """A ``Normalizer`` over the stored cohorts of these encoder names (shipped ones, or a
    checkpoint directory's ``cohort.safetensors``; those without one are left out), each
    also known by the cache key it was built with; None for ``raw`` or when none has one."""
    from lrface.search.cohort import stored_cohort

    if method == "raw":
        return None
    cohorts: dict[str, Cohort] = {}
    for name in encoders:
        cohort = stored_cohort(name) if name else None
        if cohort is not None:
            cohorts[name] = cohort
            if cohort.info.get("probe_encoder"):
                cohorts[cohort.info["probe_encoder"]] = cohort
    return Normalizer(method, cohorts, top_k) if cohorts else None
