"""TrainConfig: YAML/JSON round trips, validation, flag overrides, the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrface.data.degrade import TrainDegradation
from lrface.losses.methods import parse_method
from lrface.models.students import list_students
from lrface.train.config import TrainConfig
from lrface.train.runner import build_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").rglob("*.yaml"))
RUN_OUTS = {path: TrainConfig.load(path).out for path in CONFIGS}
"""Where each config's run goes: a config may start from another's."""


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    config = TrainConfig(
        method="l2=5,darkrank=16",
        student_kwargs={"widths": [8, 16, 16, 32]},
        degradation=TrainDegradation(min_size=10, blur_sigma=(0.3, 1.5), jpeg_quality=(20, 90)),
        milestones=[100, 200],
        view="view2",
        fold=3,
    )
    path = tmp_path / f"cfg{suffix}"
    config.save(path)
    loaded = TrainConfig.load(path)
    assert loaded == config
    assert loaded.degradation.blur_sigma == (0.3, 1.5)


def test_validation():
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"lr": 1.0, "learning_rate": 2.0})
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="fold"):
        TrainConfig(view="view2")
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_flags_override_file_and_none_keeps(tmp_path):
    path = tmp_path / "c.yaml"
    TrainConfig(method="adda+l2", lr=0.01, steps=50).save(path)
    config = build_config(path, lr=None, steps=7, student="teacher-init")
    assert (config.method, config.lr, config.steps, config.student) == (
        "adda+l2",
        0.01,
        7,
        "teacher-init",
    )


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load_and_name_real_things(path):
    config = TrainConfig.load(path)
    parse_method(config.method)
    assert config.student in list_students()
    if config.init_from:  # a shipped student, or the run another config here makes first
        from lrface.models.pretrained import MANIFEST

        runs_made_here = {out for other, out in RUN_OUTS.items() if other != path}
        assert config.init_from in MANIFEST or config.init_from in runs_made_here


def test_configs_exist():
    assert len(CONFIGS) >= 4


def test_set_overrides_nested_fields_and_rejects_bad_ones(tmp_path):
    path = tmp_path / "c.yaml"
    TrainConfig(method="prototype+l2", steps=50).save(path)
    config = build_config(
        path,
        [
            "weight_decay=0.05",
            "degradation.max_size=24",
            "degradation.blur_sigma=[0.4, 1.0]",
            "student_kwargs.widths=[48, 96, 192, 384]",
            "method_kwargs.prototype.scale=128",
        ],
        steps=9,  # a named flag still wins over the file and the overrides
    )
    assert config.weight_decay == 0.05 and config.steps == 9
    assert config.degradation.max_size == 24 and config.degradation.blur_sigma == (0.4, 1.0)
    assert config.student_kwargs == {"widths": [48, 96, 192, 384]}
    assert config.method_kwargs == {"prototype": {"scale": 128}}
    for bad, match in [
        ("weight_decay", "key.path=value"),
        ("lr.value=1", "not a nested setting"),
        ("degradation.size=3", "bad override"),
        ("learning_rate=1", "unknown TrainConfig keys"),
        ("detected_prob=1.5", "detected_prob must be in"),
        ("adam_betas=[0.5]", "adam_betas"),
        ("detected_sizes=[16, 0]", "detected_sizes positive"),
    ]:
        with pytest.raises(ValueError, match=match):
            build_config(path, [bad])
