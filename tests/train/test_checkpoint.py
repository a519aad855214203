"""Checkpoint pieces: optimizer state through safetensors + JSON, students back as encoders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lrface.models.checkpoint import (
    load_student,
    load_student_encoder,
    load_student_weights,
    resolve_student_dir,
)
from lrface.models.factory import create_encoder
from lrface.models.students import create_student
from lrface.train.checkpoint import join_state_dict, save_checkpoint, split_state_dict
from tests.train.synthetic import TINY_STUDENT


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_optimizer_state_round_trips_without_pickle(kind):
    model = torch.nn.Linear(4, 3)
    if kind == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.5, 0.9))
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    tensors, meta = split_state_dict("optim", opt.state_dict())
    meta = json.loads(json.dumps(meta))  # must be plain JSON
    state = join_state_dict("optim", tensors, meta)
    original = opt.state_dict()
    assert state["param_groups"] == original["param_groups"]
    for index, entries in original["state"].items():
        for key, value in entries.items():
            assert torch.equal(state["state"][index][key], value)
    fresh = type(opt)(model.parameters(), lr=1.0)
    fresh.load_state_dict(state)
    assert fresh.state_dict()["param_groups"][0]["lr"] == 0.1


def test_student_checkpoint_loads_as_encoder(tmp_path):
    torch.manual_seed(0)
    student = create_student("compact", **TINY_STUDENT).eval()
    info = {"name": "compact", "kwargs": TINY_STUDENT, "input_size": 32, "dim": 128}
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "step-0000010", student, info, {}, {"step": 10})
    assert resolve_student_dir(run).name == "step-0000010"
    encoder = create_encoder(str(run))
    assert (encoder.name, encoder.input_size, encoder.dim) == ("compact", 32, 128)
    chips = np.random.default_rng(0).integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    emb = encoder.embed(chips)
    assert emb.shape == (3, 128)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)

    with torch.no_grad():
        student.head[-1].bias += 1.0
    save_checkpoint(run / "best", student, info, {}, {"step": 12})
    best = load_student_encoder(run / "best")
    assert best.cache_key != encoder.cache_key and best.cache_key.startswith("student-compact-")
    assert not np.allclose(best.embed(chips), emb)
    with pytest.raises(FileNotFoundError):
        load_student_encoder(tmp_path / "empty")


def test_run_directory_loads_its_final_checkpoint_not_best(tmp_path):
    """``best/`` is picked on the evaluation pairs, so only ``RUN/best`` asks for it."""
    torch.manual_seed(0)
    info = {"name": "compact", "kwargs": TINY_STUDENT, "input_size": 32, "dim": 128}
    run = tmp_path / "run"
    for step in (5, 10):
        student = create_student("compact", **TINY_STUDENT).eval()
        save_checkpoint(run / "checkpoints" / f"step-{step:07d}", student, info, {}, {})
        if step == 5:
            save_checkpoint(run / "best", student, info, {}, {})
    assert resolve_student_dir(run) == run / "checkpoints" / "step-0000010"
    assert resolve_student_dir(run / "best") == run / "best"
    final = create_encoder(str(run / "checkpoints" / "step-0000010")).cache_key
    best = create_encoder(str(run / "best")).cache_key
    assert final != best
    assert create_encoder(str(run)).cache_key == final
    assert load_student_encoder(run).cache_key == final


def test_init_from_copies_a_run_s_weights_and_refuses_another_architecture(tmp_path):
    torch.manual_seed(0)
    trained = create_student("compact", **TINY_STUDENT).eval()
    with torch.no_grad():
        for value in trained.parameters():
            value.add_(torch.randn_like(value))
    info = {"name": "compact", "kwargs": TINY_STUDENT, "input_size": 32, "dim": 128}
    save_checkpoint(tmp_path / "run" / "checkpoints" / "step-0000010", trained, info, {}, {})
    fresh = create_student("compact", **TINY_STUDENT)
    assert not torch.equal(fresh.head[-1].weight, trained.head[-1].weight)
    load_student_weights(fresh, "compact", tmp_path / "run")
    for name, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    with pytest.raises(ValueError, match="holds a 'compact' student, not 'teacher-init'"):
        load_student_weights(fresh, "teacher-init", tmp_path / "run")


def test_init_from_a_shipped_student_by_name():
    from lrface.models.pretrained import pretrained_dir

    student = create_student("teacher-init", pretrained=False)
    load_student_weights(student, "teacher-init", "lrface-lr-v1")
    shipped, _ = load_student(pretrained_dir("lrface-lr-v1"))
    name, value = next(iter(shipped.state_dict().items()))
    assert torch.equal(student.state_dict()[name], value)
