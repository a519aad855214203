"""hr-lr-detected: probes cut from MTCNN's landmarks in the shrunk whole image, misses score 0."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PIL import Image

import lrface.eval.detected_verification as detected_verification
from lrface.data.chips import ChipSet
from lrface.data.lfw import Pair
from lrface.eval.benchmark import PairData
from lrface.eval.detected_verification import detected_rows, probe_embeddings
from tests.data.test_detected import CentreDetector
from tests.eval.test_benchmark import MeanColourEncoder


class MissingDetector(CentreDetector):
    """``CentreDetector`` that finds nothing in images whose mean red is below 100."""

    settings = {"name": "centre-missing"}

    def __init__(self, min_face: float = 12):
        super().__init__()

    def detect_batch(self, images):
        found = super().detect_batch(images)
        return [
            faces if image[..., 0].mean() >= 100 else []
            for image, faces in zip(images, found, strict=True)
        ]


def make_pairs(tmp_path) -> tuple[SimpleNamespace, PairData]:
    rng = np.random.default_rng(3)
    names = []
    for i in range(6):
        image = rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)
        image[..., 0] = 20 if i == 5 else 200  # image 5: no face found
        name = f"p{i}.png"
        Image.fromarray(image).save(tmp_path / name)
        names.append(name)
    chips = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    keys = [f"{i + 1:040x}" for i in range(6)]
    pairs = [Pair(i % 2, names[i], names[i + 1], i % 3 == 0) for i in range(5)]
    return SimpleNamespace(root=tmp_path), PairData(pairs, ChipSet(chips, names, keys), 0, {}, 0)


def test_probes_are_detected_chips_and_misses_are_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(detected_verification, "MTCNN", MissingDetector)
    lfw, data = make_pairs(tmp_path)
    bank = detected_verification.detected_probes(lfw, data, 16, progress=False)
    assert bank.found[0].tolist() == [True] * 5 + [False]
    encoder = MeanColourEncoder("probe", 0.0)
    probe = probe_embeddings(encoder, data, bank, "clean", progress=False)
    assert np.all(probe[5] == 0)
    np.testing.assert_allclose(probe[2], encoder.embed(bank.chip(0, 2, 16)[None])[0], rtol=1e-5)


def test_rows_score_every_pair_twice_and_a_miss_rejects(tmp_path, monkeypatch):
    monkeypatch.setattr(detected_verification, "MTCNN", MissingDetector)
    lfw, data = make_pairs(tmp_path)
    gallery = MeanColourEncoder("gallery", 0.0)
    (row,) = detected_rows(
        lfw, data, [12], gallery, MeanColourEncoder("probe", 1.0), flip=False, progress=False
    )
    assert row["protocol"] == "hr-lr-detected" and row["size"] == 12
    assert row["trials"] == 2 * len(data.pairs)
    assert abs(row["detected"] - 5 / 6) < 1e-9
    assert {"tar_far_1e_3", "tar_far_1e_4", "accuracy"} <= set(row)
