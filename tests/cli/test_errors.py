"""Every error a user can cause on the command line ends in a short message and an exit code,
never a traceback, and before any heavy work (alignment, embedding)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lrface.cli import app


def _cases(tmp):
    regular = tmp / "regular.txt"
    regular.write_text("x")
    people = tmp / "people" / "someone"
    people.mkdir(parents=True)
    image = tmp / "a.png"
    image.write_bytes(b"")
    return [
        (["benchmark", "--lfw", str(tmp / "missing")], "LFW was not found"),
        (["benchmark", "--encoder", "no-such-encoder"], "unknown encoder"),
        (["benchmark", "--sizes", "8,x"], "size 'x'"),
        (["benchmark", "--folds", "a,b"], "list of folds 0-9"),
        (["calibrate-openset", "--lfw", str(tmp / "missing")], "LFW was not found"),
        (["calibrate-openset", "--encoder", "no-such-encoder"], "unknown encoder"),
        (["calibrate-openset", "--scoring", "cosine"], "--scoring: scoring must be one of"),
        (
            ["calibrate-openset", "--scoring", "asnorm", "--encoder", str(people)],
            "has no stored cohort",
        ),
        (["calibrate-watch", "--scoring", "znorm"], "--scoring must be one of raw, asnorm"),
        (["train", "--config", str(tmp / "missing.yaml")], "missing.yaml"),
        (["train", "--method", "no-such-method", "--steps", "1"], "no-such-method"),
        (["train", "--student", "no-such-student", "--steps", "1"], "no-such-student"),
        (["train", "--lfw", str(tmp / "missing"), "--steps", "1"], "LFW was not found"),
        (
            ["gallery", "enroll", str(tmp / "people"), "--gallery", str(regular / "g.st")],
            "regular.txt",
        ),
        (["gallery", "search", str(image), "--gallery", str(tmp / "none.st")], "no such gallery"),
        (["verify", str(tmp), str(image)], "is a directory"),
        (["export", "no-such-encoder", "--out", str(tmp / "m.onnx")], "unknown encoder"),
        (["verify", str(image), str(image), "--calibration", str(tmp)], "is a directory"),
        (
            ["verify", str(image), str(image), "--student", str(tmp / "runs" / "x")],
            "runs/x: no such checkpoint directory",
        ),
    ]


@pytest.mark.parametrize("case", range(19))
def test_cli_error_paths_end_in_one_line(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, expected = _cases(tmp_path)[case]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output  # the one exit status of a user error
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error: ")]) == 1
    assert expected in " ".join(result.output.split()).replace("│", ""), result.output


def test_training_on_a_folder_never_decontaminated_stops_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from lrface.cli import app
    from tests.conftest import LFW_ROOT

    if LFW_ROOT is None:
        pytest.skip("needs ../shared/data/lfw (LFW not present): the LFW check comes first")
    faces = tmp_path / "faces"
    faces.mkdir()
    args = ["train", "--set", f"unlabelled=[{faces}]", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"lrface decontaminate {faces}" in " ".join(result.output.replace("│", "").split())
    missing = CliRunner().invoke(app, ["package-student", str(tmp_path / "nope"), "out"])
    assert missing.exit_code == 1 and "neither a checkpoint nor a run directory" in missing.output
