"""The README's Python example runs verbatim (on LFW, from the repository root)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.lfw
def test_readme_python_example_runs(monkeypatch, capsys, lfw_root):
    if not (ROOT.parent / "shared" / "data" / "lfw").is_dir():
        pytest.skip("the example reads ../shared/data/lfw from the repository root")
    from lrface.detect.weights import WeightsUnavailableError

    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    monkeypatch.chdir(ROOT)
    try:
        exec(compile(code, "README.md", "exec"), {})
    except WeightsUnavailableError as exc:
        pytest.skip(f"MTCNN weights cannot be fetched: {exc}")
    score, same, source, reason = capsys.readouterr().out.split(" ", 3)
    assert same == "True" and float(score) > 0.9 and source.endswith("dlib-resnet-torch.json")
    assert "hr-hr at full" in reason
