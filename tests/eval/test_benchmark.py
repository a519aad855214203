"""The benchmark's assembly of per-fold students and its outputs, on synthetic chips."""

import json

import numpy as np

from lrface.data.chips import ChipSet
from lrface.data.degrade import EvalDegradation
from lrface.data.lfw import Pair
from lrface.eval.benchmark import BenchmarkConfig, PairData, _probe_embeddings, write_outputs
from lrface.models.encoder import FaceEncoder


class MeanColourEncoder(FaceEncoder):
    """Embeds a chip as its mean colour plus an offset: a transparent fake."""

    def __init__(self, key: str, offset: float):
        super().__init__(batch_size=8)
        self.name = key
        self.dim = 3
        self.input_size = 16
        self.offset = offset

    @property
    def cache_key(self) -> str:
        return self.name

    def _embed_batch(self, chips: np.ndarray) -> np.ndarray:
        return chips.reshape(len(chips), -1, 3).mean(axis=1) + self.offset


def make_data() -> PairData:
    rng = np.random.default_rng(0)
    names = [f"p{i}/p{i}_0001.jpg" for i in range(8)]
    chips = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    keys = [f"{i:040x}" for i in range(8)]
    pairs = [Pair(i // 2, names[i], names[(i + 1) % 8], i % 2 == 0) for i in range(4)]
    return PairData(pairs, ChipSet(chips, names, keys), 0, {}, 0)


def test_each_fold_is_embedded_by_its_own_student():
    data = make_data()
    a, b = MeanColourEncoder("fold0-student", 0.0), MeanColourEncoder("fold1-student", 1000.0)
    hr = EvalDegradation(None)
    first, second = _probe_embeddings({0: a, 1: b}, data, hr, False, False)
    alone_a = _probe_embeddings(a, data, hr, False, False)
    alone_b = _probe_embeddings(b, data, hr, False, False)
    fold0 = np.array([p.fold == 0 for p in data.pairs])
    assert np.allclose(first[fold0], alone_a[0][fold0])
    assert np.allclose(second[~fold0], alone_b[1][~fold0])
    assert not np.allclose(first[~fold0], alone_a[0][~fold0])


def test_outputs_and_calibration_keys(tmp_path):
    row = {
        "protocol": "hr-lr",
        "size": 16,
        "inter_eye_px": 5.3,
        "gallery_encoder": "t",
        "probe_encoder": "s",
        "accuracy": 0.9,
        "accuracy_std": 0.01,
        "fold_accuracies": [0.9],
        "tar_far_1e_3": 0.5,
        "tar_far_1e_2": 0.7,
        "auc": 0.95,
        "threshold": 0.8,
        "trials": 4,
    }
    hr_row = {**row, "protocol": "hr-hr", "size": None, "inter_eye_px": None, "threshold": 0.9}
    paths = write_outputs(tmp_path, [row, hr_row], BenchmarkConfig(), make_data(), {})
    calibration = json.loads(paths["calibration"].read_text())
    assert calibration["thresholds"] == {"hr-lr@16": 0.8, "hr-hr@full": 0.9}
    table = paths["markdown"].read_text()
    assert "| 16x16 (5.3) | — | 90.00 ± 1.00 (50.0) |" in table
    assert paths["plot"].stat().st_size > 0
