"""The README's Python example runs verbatim, on LFW photos (and a clip made from one) copied
under the names it uses into a temporary folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _clip(photo: Path, path: Path, frames: int = 16) -> None:
    """The photo (its face about 48 px wide) crossing a grey 320 x 240 picture."""
    face = cv2.resize(cv2.imread(str(photo)), (110, 110), interpolation=cv2.INTER_AREA)
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(frames):
        frame = np.full((240, 320, 3), 90, np.uint8)
        x = 10 + i * 12
        frame[60:170, x : x + 110] = face
        video.write(frame)
    video.release()


@pytest.mark.lfw
@pytest.mark.slow
def test_readme_python_example_runs(monkeypatch, capsys, tmp_path, lfw_root):
    from lrface.detect.weights import WeightsUnavailableError

    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    bush, serena = lfw_root / "George_W_Bush", lfw_root / "Serena_Williams"
    shutil.copy(bush / "George_W_Bush_0001.jpg", tmp_path / "a.jpg")
    cv2.imwrite(str(tmp_path / "b.png"), cv2.imread(str(bush / "George_W_Bush_0002.jpg")))
    shutil.copy(serena / "Serena_Williams_0001.jpg", tmp_path / "jane1.jpg")
    shutil.copy(serena / "Serena_Williams_0002.jpg", tmp_path / "jane2.jpg")
    still = cv2.imread(str(serena / "Serena_Williams_0003.jpg"))
    cv2.imwrite(str(tmp_path / "cctv_still.png"), cv2.resize(still, (100, 100)))
    _clip(serena / "Serena_Williams_0004.jpg", tmp_path / "camera.mp4")
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, "README.md", "exec"), {})
    except WeightsUnavailableError as exc:
        pytest.skip(f"MTCNN weights cannot be fetched: {exc}")
    same, answer, *events = capsys.readouterr().out.splitlines()
    assert same == "True"  # two photos of George W Bush
    # scored by AS-norm, as `lrface gallery search` scores it (a cosine would be under 1)
    assert re.match(r"(Jane Doe \(-?\d+\.\d+ >= threshold|unknown \(best score)", answer), answer
    assert "asnorm-normalized scores" in answer, answer
    assert events and all(re.match(r"\d+ (Jane Doe|unknown) \(", e) for e in events), events
    assert (tmp_path / "watchlist.db").is_file()
