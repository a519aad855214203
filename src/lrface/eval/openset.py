"""Open-set (watch-list) identification: pure functions for the split, the scores and the rates.

Conventions (NIST FRVT 1:N, Grother et al., NISTIR 8271):

* A *search* is one probe against a gallery of one template per enrolled identity; its result
  is the top-1 identity and score (cosine of unit embeddings).
* *Mated* searches have the probe's identity enrolled; *non-mated* ones do not.
* **FPIR(t)** = share of non-mated searches whose best score is ``>= t`` (someone not on the
  list is reported as someone on it).
* **FNIR(t)** = share of mated searches whose true identity is not returned at rank 1 with score
  ``>= t`` (missed: the answer is unknown, or the wrong person).
* The threshold at a target FPIR is the smallest ``t`` with ``FPIR(t) <= target`` on the
  calibration searches; a search is answered *unknown* when its best score is under ``t``.

The split (``split_people``): people with at least two images are shuffled with a seed and half
of them are *enrolled* (first image, by file name, in the gallery; up to ``max_mated`` of the
others are mated probes), the other half and every one-image person are *strangers* (up to
``max_nonmated`` images each are non-mated probes). Every person is then put in half ``0`` or
``1``: the threshold is chosen on half 0's searches and the rates reported on half 1's, so the
reported rates come from people the threshold never saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class OpenSetSplit:
    """Relpaths of the gallery (one per enrolled person) and of the probes, with each probe's
    identity (None for a stranger) and half (0: choose the threshold, 1: report)."""

    gallery: list[str]
    gallery_names: list[str]
    probes: list[str]
    probe_names: list[str | None]
    probe_half: np.ndarray


def assign_people(
    images: Mapping[str, Sequence[str]], seed: int = 0
) -> tuple[set[str], dict[str, int]]:
    """The seeded people-level split behind ``split_people``: the enrolled people (half of
    those with two or more images) and every person's half (0: calibration, 1: report)."""
    rng = np.random.default_rng(seed)
    people = sorted(images)
    multi = [p for p in people if len(images[p]) >= 2]
    enrolled = set(rng.permutation(multi)[: len(multi) // 2].tolist())
    half = {p: i % 2 for i, p in enumerate(rng.permutation(people).tolist())}
    return enrolled, half


def split_people(
    images: Mapping[str, Sequence[str]],
    seed: int = 0,
    max_mated: int = 4,
    max_nonmated: int = 2,
) -> OpenSetSplit:
    """The seeded enrolled / stranger and calibration / report split of ``{person: relpaths}``
    (the module docstring states it)."""
    people = sorted(images)
    enrolled, half = assign_people(images, seed)
    gallery, gallery_names, probes, names, halves = [], [], [], [], []
    for person in people:
        files = sorted(images[person])
        if person in enrolled:
            gallery.append(files[0])
            gallery_names.append(person)
            chosen, name = files[1 : 1 + max_mated], person
        else:
            chosen, name = files[:max_nonmated], None
        probes += chosen
        names += [name] * len(chosen)
        halves += [half[person]] * len(chosen)
    return OpenSetSplit(gallery, gallery_names, probes, names, np.array(halves, np.int64))


def fpir(nonmated_scores: np.ndarray, threshold: float) -> float:
    """Share of non-mated searches with best score ``>= threshold``."""
    return float(np.mean(np.asarray(nonmated_scores) >= threshold))


def fnir(mated_scores: np.ndarray, mated_correct: np.ndarray, threshold: float) -> float:
    """Share of mated searches not answered with the right identity at score ``>= threshold``."""
    hit = np.asarray(mated_correct, bool) & (np.asarray(mated_scores) >= threshold)
    return float(1.0 - np.mean(hit))


def threshold_at_fpir(nonmated_scores: np.ndarray, target: float) -> float:
    """The smallest threshold whose FPIR on these scores is at most ``target``."""
    if not 0 <= target < 1:
        raise ValueError(f"target FPIR must be in [0, 1), got {target}")
    scores = np.sort(np.asarray(nonmated_scores, np.float64))[::-1]
    if not len(scores):
        raise ValueError("no non-mated scores to set a threshold on")
    allowed = int(np.floor(target * len(scores)))
    if allowed >= len(scores):
        return float(scores[-1])
    # just above the (allowed+1)-th highest score: at most ``allowed`` scores reach it
    return float(np.nextafter(scores[allowed], np.inf))


@dataclass
class OpenSetResult:
    """Threshold chosen on half 0 at ``target_fpir``; rates measured on half 1."""

    size: int | None
    target_fpir: float
    threshold: float
    fpir: float
    fnir: float
    rank1_miss: float
    mated: int
    nonmated: int
    method: str = "raw"
    """The scoring the threshold applies to (``lrface.search.normalize.METHODS``)."""
    rank5_miss: float | None = None
    """Share of half 1's mated searches whose identity is not among the top 5 (no threshold)."""

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in vars(self).items()}


def evaluate_openset(
    gallery: np.ndarray,
    gallery_names: Sequence[str],
    probes: np.ndarray,
    split: OpenSetSplit,
    target_fpir: float,
    size: int | None,
) -> OpenSetResult:
    """Choose the threshold at ``target_fpir`` on half 0's non-mated searches and report FPIR,
    FNIR and the rank-1 miss rate (FNIR at threshold -inf) on half 1's searches."""
    return evaluate_scores(probes @ gallery.T, gallery_names, split, target_fpir, size)


def evaluate_scores(
    scores: np.ndarray,
    gallery_names: Sequence[str],
    split: OpenSetSplit,
    target_fpir: float,
    size: int | None,
    method: str = "raw",
    threshold: float | None = None,
) -> OpenSetResult:
    """``evaluate_openset`` on a ``probes x gallery`` score matrix (raw or normalized): each
    search answers its highest-scoring identity; rank-1 and rank-5 misses come from the same
    scores, so a normalization that reorders candidates shows in them. ``threshold``: one set
    elsewhere (on other templates, say) instead of on these scores' half 0."""
    scores = np.asarray(scores)
    best = scores.argmax(1)
    best_scores = scores[np.arange(len(scores)), best]
    names = np.array(list(gallery_names), dtype=object)
    truth = np.array(split.probe_names, dtype=object)
    mated = np.array([n is not None for n in split.probe_names])
    correct = names[best] == truth
    top5 = np.argsort(-scores, axis=1)[:, :5]
    in_top5 = (names[top5] == truth[:, None]).any(1)
    calib, report = split.probe_half == 0, split.probe_half == 1
    if threshold is None:
        threshold = threshold_at_fpir(best_scores[calib & ~mated], target_fpir)
    rep_mated = report & mated
    return OpenSetResult(
        size=size,
        target_fpir=target_fpir,
        threshold=threshold,
        fpir=fpir(best_scores[report & ~mated], threshold),
        fnir=fnir(best_scores[rep_mated], correct[rep_mated], threshold),
        rank1_miss=fnir(best_scores[rep_mated], correct[rep_mated], -np.inf),
        mated=int(rep_mated.sum()),
        nonmated=int((report & ~mated).sum()),
        method=method,
        rank5_miss=float(1.0 - in_top5[rep_mated].mean()) if rep_mated.any() else None,
    )
