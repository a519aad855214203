"""End-to-end: ``lrface benchmark`` on a tiny LFW-shaped subset with a corrupt image in it."""

import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from lrface.cli import app
from lrface.cli.common import parse_sizes
from lrface.data.lfw import LFW
from tests.conftest import needs_lfw


def test_parse_sizes(capsys):
    assert parse_sizes("8, 16,full") == [8, 16, None]
    with pytest.raises(typer.Exit):
        parse_sizes("8,x")
    assert capsys.readouterr().err == "error: --sizes: size 'x' is not an integer >= 4 or 'full'\n"


def _pairs_subset(lfw_root, root, folds: int) -> list:
    """An LFW-shaped folder at ``root`` holding one same and one different pair of each of the
    first ``folds`` View 2 folds (real images) and its pairs.txt; the pairs chosen."""
    pairs = LFW(lfw_root).view2()
    chosen = []
    for fold in range(folds):
        in_fold = [p for p in pairs if p.fold == fold]
        chosen += [in_fold[0], in_fold[300]]
    for pair in chosen:
        for rel in (pair.first, pair.second):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(lfw_root / rel, root / rel)
    lines = [f"{folds} 1"]
    for pair in chosen:
        a, b = pair.first.split("/"), pair.second.split("/")
        ia, ib = int(a[1][-8:-4]), int(b[1][-8:-4])
        lines.append(f"{a[0]} {ia} {ib}" if pair.same else f"{a[0]} {ia} {b[0]} {ib}")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return chosen


@needs_lfw
def test_benchmark_end_to_end_skips_bad_images(lfw_root, tmp_path):
    # Three folds of one same + one different pair, from real images; one replaced by junk.
    root = tmp_path / "lfw"
    chosen = _pairs_subset(lfw_root, root, 3)
    broken = chosen[-1].second
    (root / broken).write_bytes(b"\xff\xd8\xff garbage")

    out = tmp_path / "out"
    args = ["benchmark", "--encoder", "dlib-resnet-torch", "--lfw", str(root), "--sizes", "16,full"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 unusable images and 1 pairs" in result.output
    assert broken in result.output
    summary = json.loads((out / "results.json").read_text())
    assert summary["pairs_evaluated"] == 5 and summary["pairs_skipped"] == 1
    protocols = {(r["protocol"], r["size"]) for r in summary["rows"]}
    assert protocols == {("hr-hr", None), ("hr-lr", 16), ("lr-lr", 16)}
    hr = next(r for r in summary["rows"] if r["protocol"] == "hr-hr")
    assert hr["accuracy"] >= 0.8  # the teacher gets clean LFW pairs right
    assert (out / "accuracy.png").stat().st_size > 0
    assert "hr-lr@16" in json.loads((out / "calibration.json").read_text())["thresholds"]


@needs_lfw
def test_detected_protocol_scores_probes_mtcnn_found_in_the_shrunk_image(lfw_root, tmp_path):
    root = tmp_path / "lfw"
    _pairs_subset(lfw_root, root, 2)
    out = tmp_path / "out"
    args = ["benchmark", "--protocol", "hr-lr-detected", "--encoder", "dlib-resnet-torch"]
    args += ["--lfw", str(root)]
    result = CliRunner().invoke(app, [*args, "--sizes", "24", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| hr-lr-detected (clean) | 24 px |" in result.output
    report = json.loads((out / "hr-lr-detected-clean.json").read_text())
    assert report["pairs"] == 4 and report["protocol"] == "hr-lr-detected"
    (row,) = report["results"]["dlib-resnet-torch"]
    assert row["size"] == 24 and row["detected"] == 1.0  # every subject found at 24 px
    assert len(row["fold_accuracies"]) == 2 and 0 <= row["accuracy"] <= 1
    result = CliRunner().invoke(app, [*args, "--sizes", "full"])
    assert result.exit_code == 1
    assert "hr-lr-detected needs face widths" in result.output


def test_per_fold_runs_take_finished_final_checkpoints_and_ensembles(tmp_path):
    from lrface.models.checkpoint import fold_runs
    from lrface.train.config import TrainConfig

    for fold, last in [(0, 1000), (1, 750), (3, 1000)]:
        run = tmp_path / f"fold-{fold}"
        run.mkdir()
        TrainConfig(steps=1000, view="view2", fold=fold).save(run / "config.yaml")
        for step in (500, last):
            checkpoint = run / "checkpoints" / f"step-{step:07d}"
            checkpoint.mkdir(parents=True, exist_ok=True)
            (checkpoint / "train.json").write_text("{}")
    (tmp_path / "notes").mkdir()
    (tmp_path / "fold-4" / "member-0").mkdir(parents=True)  # an ensemble: loading checks it
    found, unfinished = fold_runs(tmp_path)
    assert sorted(found) == [0, 3, 4]
    assert found[0].name == "step-0001000" and found[4] == tmp_path / "fold-4"
    assert unfinished == [tmp_path / "fold-1"]
    assert fold_runs(tmp_path / "missing") == ({}, [])


@needs_lfw
def test_identification_protocol_probes_each_fold_with_its_own_student(lfw_root, tmp_path):
    """Four people in two View 2 folds, one student run per fold; one probe photo is junk."""
    import torch

    from lrface.models.students import create_student
    from lrface.train.checkpoint import save_checkpoint
    from lrface.train.config import TrainConfig
    from tests.train.synthetic import TINY_STUDENT

    names = []
    for fold in (0, 1):
        people = dict.fromkeys(p.people[0] for p in LFW(lfw_root).view2() if p.fold == fold)
        names += list(people)[:2]
    root = tmp_path / "lfw"
    for name in names:
        (root / name).mkdir(parents=True)
        for image in sorted((lfw_root / name).iterdir())[:2]:
            shutil.copy(image, root / name / image.name)
    alone = root / "Nobody_Else" / "Nobody_Else_0001.jpg"  # one photo: not a benchmark person
    alone.parent.mkdir()
    shutil.copy(next((lfw_root / names[0]).iterdir()), alone)
    junk = sorted((root / names[3]).iterdir())[1]
    junk.write_bytes(b"\xff\xd8\xff garbage")
    lines = ["2 1"]
    for a, b in (names[:2], names[2:]):
        lines += [f"{a} 1 2", f"{a} 1 {b} 1"]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")

    runs = tmp_path / "runs"
    info = {"name": "compact", "kwargs": TINY_STUDENT, "input_size": 32, "dim": 128}
    for fold in (0, 1):
        torch.manual_seed(fold)
        run = runs / f"fold-{fold}"
        student = create_student("compact", **TINY_STUDENT).eval()
        save_checkpoint(run / "checkpoints" / "step-0000010", student, info, {}, {})
        TrainConfig(steps=10, view="view2", fold=fold).save(run / "config.yaml")

    out = tmp_path / "out"
    args = ["benchmark", "--protocol", "identification", "--lfw", str(root), "--sizes", "24"]
    args += ["--size-cutoff", "48"]
    result = CliRunner().invoke(app, [*args, "--encoder", str(runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "fold-0: 2 probes against 4 people" in result.output
    assert "skipped 1 unreadable probe images" in result.output
    report = json.loads((out / "identification.json").read_text())
    assert report["people"] == 4 and sorted(report["students"]) == ["fold-0", "fold-1"]
    assert report["students"]["fold-0"] != report["students"]["fold-1"]
    detected = report["results"]["24"]["detected"]
    assert detected["unreadable"] == 1
    for label in ("teacher", "teacher+student"):
        cell = detected["pipelines"][label]
        # a gallery of four people puts every searched probe within rank 5
        assert cell["probes"] == 4
        assert cell["rank5_hits"] == 4 - detected["no_face"] - detected["unreadable"]
    assert detected["pipelines"]["teacher+student"]["student_served"] > 0
    reference = report["results"]["24"]["reference"]
    assert reference["unaligned"] == 1 and set(reference["pipelines"]) == {"teacher", "student"}
    assert (
        "| 24 | 55x55 image, MTCNN | teacher+student | 4 |"
        in (out / "identification.md").read_text()
    )
