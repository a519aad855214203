"""``lrface calibrate-watch``: bad options are one line; a tiny run on LFW writes a track
calibration that loads (with thresholds by watch-list size) and a report measured on the other
half of the people, and its saved searches set the same thresholds again without filming."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lrface.calibration import Calibration
from lrface.cli import app


def test_bad_options_are_one_line(tmp_path):
    bad = [("--fpir", "0.01,x"), ("--fpir", "1.5"), ("--camera", "3,3"), ("--subgalleries", "0")]
    bad += [("--scoring", "znorm")]
    for option, value in bad:
        result = CliRunner().invoke(app, ["calibrate-watch", option, value, "--out", str(tmp_path)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output


def test_tiny_run_writes_a_track_calibration(tmp_path, lfw_root):
    args = ["calibrate-watch", "--lfw", str(lfw_root), "--student", "none", "--out", str(tmp_path)]
    args += ["--people", "2", "--passersby", "2", "--calibration-passersby", "3"]
    args += ["--frames", "8", "--min-tracks", "1", "--fpir", "0.5", "--subgalleries", "1"]
    result = CliRunner().invoke(app, [*args, "--scoring", "asnorm"])
    assert result.exit_code == 0, result.output
    calib = Calibration.load(tmp_path / "fpir-0.5" / "dlib-resnet-torch-tracks.json")
    assert calib.tracks and calib.openset_fpir == 0.5 and calib.openset
    assert calib.scoring == "raw"
    # the same tracks scored by AS-norm against the teacher's cohort: thresholds of their own
    normalized = Calibration.load(tmp_path / "fpir-0.5" / "dlib-resnet-torch-tracks-asnorm.json")
    assert normalized.tracks and normalized.scoring == "asnorm"
    assert normalized.openset != calib.openset
    assert "| teacher asnorm | all | track @ 0.5 |" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["gallery_size"], report["probes"], report["passersby"]) == (2, 2, 2)
    rates = report["fpir"]["0.5"]["teacher/track"]["all"]
    assert rates["probes"] == 8 and rates["passersby"] == 8  # 2 clips x 4 face bins
    assert "| teacher | all | track @ 0.5 |" in result.output
    # thresholds for watch-lists of 1 and of the whole gallery (2); sub-gallery rates of 1
    assert sorted(calib.openset_by_gallery) == [1, 2]
    assert "| teacher | 1 | size bins (8 + 8) | 0.5 |" in result.output
    # set again from the saved searches, without filming: the same file
    again = tmp_path / "again"
    args = ["calibrate-watch", "--student", "none", "--searches", str(tmp_path / "searches.npz")]
    args += ["--min-tracks", "1", "--fpir", "0.5", "--subgalleries", "1", "--out", str(again)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    name = "fpir-0.5/dlib-resnet-torch-tracks.json"
    assert (again / name).read_text() == (tmp_path / name).read_text()
    bad = CliRunner().invoke(app, [*args[:4], str(tmp_path / "report.json"), *args[5:]])
    assert bad.exit_code == 1 and "not a searches file" in bad.output, bad.output
