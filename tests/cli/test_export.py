"""``lrface export``: a trained student to ONNX, described by a JSON file, checked for parity."""

import json

import numpy as np
from typer.testing import CliRunner

from lrface.cli import app
from lrface.models.checkpoint import load_student
from lrface.models.export import onnx_max_abs_diff
from lrface.train.engine import train
from tests.train.synthetic import TINY_STUDENT, synthetic_data, tiny_config


def test_export_writes_a_checked_onnx_student_and_refuses_non_torch_encoders(tmp_path):
    student = {**TINY_STUDENT, "fix_common": True}
    train(tiny_config(tmp_path, student_kwargs=student, steps=2), *synthetic_data(), progress=False)
    out = tmp_path / "student.onnx"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["encoder"] == "compact" and info["input_size"] == 32 and info["dim"] == 128
    assert info["max_abs_diff_vs_torch"] < 1e-4
    module, _ = load_student(tmp_path / "run")
    faces = np.random.default_rng(1).uniform(0, 255, (3, 3, 32, 32))  # another batch size
    assert onnx_max_abs_diff(out, module, faces) < 1e-4

    refused = CliRunner().invoke(app, ["export", "dlib", "--out", str(tmp_path / "x.onnx")])
    assert refused.exit_code != 0 and "not a PyTorch encoder" in refused.output
    assert not (tmp_path / "x.onnx").exists()


def test_export_removes_a_model_that_fails_the_parity_check(tmp_path, monkeypatch):
    train(tiny_config(tmp_path, steps=1), *synthetic_data(), progress=False)
    monkeypatch.setattr("lrface.models.export.onnx_max_abs_diff", lambda *args: 0.5)
    out = tmp_path / "student.onnx"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(out)])
    assert result.exit_code != 0 and "differs from PyTorch" in result.output
    assert not out.exists() and not out.with_suffix(".json").exists()
