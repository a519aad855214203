"""Ensembles: members trained apart in their own processes, loaded back as their average."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lrface.cli import app
from lrface.models.checkpoint import load_student, load_student_encoder
from lrface.models.students import EnsembleStudent, create_student
from lrface.train.config import TrainConfig
from lrface.train.members import member_configs, train_members
from tests.train.synthetic import TINY_STUDENT, synthetic_chips, tiny_config, train_synthetic_member


def test_member_configs_differ_only_in_seed_and_run_directory(tmp_path):
    config = tiny_config(tmp_path, members=3, seed=5)
    members = member_configs(config)
    assert [m.seed for m in members] == [5, 6, 7]
    assert [m.out for m in members] == [str(tmp_path / "run" / f"member-{k}") for k in range(3)]
    same = config.replace(seed=0, out="x", members=1).to_dict()
    assert all(m.replace(seed=0, out="x").to_dict() == same for m in members)


def test_ensemble_averages_unit_embeddings_and_checks_its_members():
    torch.manual_seed(0)
    a, b = create_student("compact", **TINY_STUDENT), create_student("compact", **TINY_STUDENT)
    ensemble = EnsembleStudent([a, b]).eval()
    x = torch.rand(4, 3, 32, 32) * 255
    with torch.no_grad():
        mean = torch.nn.functional.normalize(a.eval()(x), dim=1) + torch.nn.functional.normalize(
            b.eval()(x), dim=1
        )
        assert torch.allclose(ensemble(x), torch.nn.functional.normalize(mean, dim=1), atol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        EnsembleStudent([a, create_student("compact", **TINY_STUDENT, input_size=48)])


@pytest.mark.slow
def test_members_train_side_by_side_and_load_as_their_average(tmp_path):
    config = tiny_config(tmp_path, members=2, steps=2, checkpoint_every=2)
    assert train_members(config, train_synthetic_member, progress=False, threads=1) == {0: 0, 1: 0}
    out = tmp_path / "run"
    seeds = [TrainConfig.load(out / f"member-{k}" / "config.yaml").seed for k in range(2)]
    assert seeds == [0, 1]
    chips = synthetic_chips(5, seed=3)[:, ::5, ::5]  # 30 px probes
    members = [load_student_encoder(out / f"member-{k}") for k in range(2)]
    embeddings = [m.embed(chips) for m in members]
    assert not np.allclose(embeddings[0], embeddings[1])
    mean = embeddings[0] + embeddings[1]
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    ensemble = load_student_encoder(out)
    assert ensemble.name == "ensemble-2x-compact"
    np.testing.assert_allclose(ensemble.embed(chips), mean, atol=1e-5)

    exported = CliRunner().invoke(app, ["export", str(out), "--out", str(tmp_path / "e.onnx")])
    assert exported.exit_code == 0, exported.output


@pytest.mark.slow
def test_a_failed_member_is_reported_and_the_others_finish(tmp_path):
    config = tiny_config(tmp_path, members=2, steps=2, checkpoint_every=2, seed=12)
    codes = train_members(config, train_synthetic_member, progress=False, threads=1)
    assert codes[0] == 0 and codes[1] != 0
    log = (tmp_path / "run" / "member-1" / "member.log").read_text()
    assert "seed 13 fails on purpose" in log
    with pytest.raises(FileNotFoundError, match="member-1"):
        load_student(tmp_path / "run")


def test_member_progress_reads_the_last_logged_step(tmp_path):
    from lrface.train.members import _logged_step

    assert _logged_step(tmp_path) == 0
    (tmp_path / "log.csv").write_text("step,total\n")
    assert _logged_step(tmp_path) == 0
    (tmp_path / "log.csv").write_text("step,total\n20,1.5\n40,1.2\n")
    assert _logged_step(tmp_path) == 40
    (tmp_path / "log.csv").write_text("step,total\n20,1.5\n\n")
    assert _logged_step(tmp_path) == 20
