"""``lrface verify`` and ``lrface detect`` with the fake detector and encoders
(tests/cli/conftest.py), and the help's defaults."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.cli.conftest import photo


def test_verify_command_reports_encoders(cli, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    photo(a, ("red", 20, 20, 120))
    photo(b, ("red", 5, 5, 14))
    result = cli("verify", a, b, "--encoder", "teacher", "--student", "other", "--threshold", "0.9")
    assert result.exit_code == 0, result.output
    assert "decision: same person (threshold 0.9000 from --threshold: given)" in result.output
    assert "-> teacher teacher (150 px chip)" in result.output
    assert "-> student other (14 px chip)" in result.output
    missing = cli("verify", a, tmp_path / "nope.jpg", "--encoder", "teacher")
    assert missing.exit_code == 1 and "nope.jpg: no such file" in missing.output


def test_small_faces_go_to_the_shipped_student_unless_told_none(cli, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    photo(a, ("red", 20, 20, 120))
    photo(b, ("red", 5, 5, 12))
    result = cli("verify", a, b, "--encoder", "teacher", "--threshold", "0.9")
    assert "-> student lrface-lr-v2 (12 px chip)" in result.output, result.output
    alone = cli("verify", a, b, "--encoder", "teacher", "--student", "none", "--threshold", "0.9")
    assert alone.exit_code == 0 and "-> teacher teacher (150 px chip)" in alone.output
    assert "student" not in alone.output.split("decision")[1]


def test_detect_reports_the_face_count(cli, tmp_path):
    photo(tmp_path / "two.png", ("red", 10, 10, 80), ("blue", 100, 100, 70))
    (out,) = json.loads(cli("detect", tmp_path / "two.png").output)
    assert out["count"] == 2 and len(out["faces"]) == 2


def test_size_cutoff_help_shows_the_real_default():
    from lrface.cli import app

    text = " ".join(
        CliRunner()
        .invoke(app, ["verify", "--help"], env={"COLUMNS": "300"})
        .output.replace("│", "")
        .split()
    )
    assert (
        "go to the student (default: the student's own measured cutoff, else 16 px, "
        "lrface.constants.DEFAULT_SIZE_CUTOFF)" in text
    )
