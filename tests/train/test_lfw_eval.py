"""Periodic evaluation on synthetic pairs: the metrics it names, and that they measure."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from lrface.data.chips import ChipSet
from lrface.data.lfw import Pair
from lrface.eval.benchmark import PairData
from lrface.models.encoder import TorchEncoder
from lrface.train.lfw import make_evaluate_fn
from tests.train.synthetic import FakeTeacher, synthetic_chips


class _Pooled(torch.nn.Module):
    """A 'student' that sees the teacher's own 8x8 pooling: near-perfect cross-resolution."""

    def __init__(self, teacher: FakeTeacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, x):
        return self.teacher(x)


def test_evaluate_fn_scores_a_good_and_a_random_probe():
    chips = synthetic_chips(40, seed=1)
    keys = [hashlib.sha1(bytes([i])).hexdigest() for i in range(40)]
    relpaths = [f"p{i}/p{i}_0001.jpg" for i in range(40)]
    chipset = ChipSet(chips, relpaths, keys)
    # same pairs: an image with itself (a different resolution on each side); different: others
    pairs = [Pair(0, relpaths[i], relpaths[i], True) for i in range(20)]
    pairs += [Pair(0, relpaths[i], relpaths[i + 20], False) for i in range(20)]
    data = PairData(pairs, chipset, 0, {}, 0)
    teacher = FakeTeacher()
    gallery = TorchEncoder(teacher, "fake-teacher", 150, 128, key="fake-teacher-eval-test")
    evaluate_fn = make_evaluate_fn(data, gallery, sizes=[8, 16], protocols=("hr-lr", "lr-lr"))

    good = evaluate_fn(TorchEncoder(_Pooled(teacher), "pooled", 32, 128))
    assert set(good) == {
        f"{p}/{s}/{m}"
        for p in ("hr-lr", "lr-lr")
        for s in ("s8", "s16")
        for m in ("accuracy", "tar_far_1e-3", "auc")
    } | {"hr-lr/mean/accuracy", "lr-lr/mean/accuracy"}
    assert good["hr-lr/s16/accuracy"] > 0.9 and good["hr-lr/s16/auc"] > 0.95
    torch.manual_seed(0)
    random = TorchEncoder(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(128)), "random", 8, 128
    )
    random.module(torch.zeros(1, 3, 8, 8))
    poor = evaluate_fn(random)
    assert poor["hr-lr/s16/auc"] < 0.8
    assert poor["hr-lr/mean/accuracy"] == np.mean(
        [poor["hr-lr/s8/accuracy"], poor["hr-lr/s16/accuracy"]]
    )
