"""Frame sources: a truncated video is an error naming the file and the frames read, a folder
skips bad frames, a stream that fails reads goes on."""

from __future__ import annotations

import numpy as np
import pytest

from lrface.video.sources import (
    FolderSource,
    StreamSource,
    VideoReadError,
    open_source,
)
from tests.video.clips import crossing_frames, write_avi


def truncated_copy(path, fraction: float):
    data = path.read_bytes()
    out = path.with_name(f"cut-{path.name}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def test_video_file_frames_and_stride(tmp_path):
    clip = write_avi(crossing_frames(12), tmp_path / "c.avi")
    frames = list(open_source(clip, stride=3))
    assert [f.index for f in frames] == [0, 3, 6, 9]
    assert frames[0].image.shape == (96, 160, 3)
    assert np.isclose(frames[1].time, 0.3)


def test_truncated_video_names_file_and_frames_read(tmp_path):
    clip = write_avi(crossing_frames(30), tmp_path / "c.avi")
    cut = truncated_copy(clip, 0.7)
    source = open_source(cut)
    got = []
    with pytest.raises(VideoReadError) as info:
        for frame in source:
            got.append(frame.index)
    assert str(cut) in str(info.value) and "30 frames" in str(info.value)
    assert info.value.frames_read == len(got) and 0 < len(got) < 30


def test_missing_or_garbage_video(tmp_path):
    with pytest.raises(VideoReadError, match="no such video file"):
        open_source(tmp_path / "none.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoReadError, match=r"bad\.mp4: cannot be opened"):
        open_source(bad)


def test_folder_skips_unreadable_frames(tmp_path):
    from PIL import Image

    for i, image in enumerate(crossing_frames(4)):
        Image.fromarray(image).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "002.png").write_bytes(b"broken")
    source = open_source(tmp_path)
    assert isinstance(source, FolderSource)
    assert [f.index for f in source] == [0, 1, 3]
    assert len(source.skipped) == 1 and source.skipped[0][0].endswith("002.png")


class FlakyCapture:
    """A stream that fails every third read and ends after ``n`` good frames."""

    def __init__(self, n: int):
        self.n, self.reads, self.good = n, 0, 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def get(self, prop) -> float:
        return 10.0

    def read(self):
        self.reads += 1
        if self.good >= self.n or self.reads % 3 == 0:
            return False, None
        self.good += 1
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self) -> None:
        pass


def test_stream_goes_on_after_dropped_frames():
    source = StreamSource(
        "rtsp://camera", max_failures=5, retry_wait=0, capture=lambda spec: FlakyCapture(10)
    )
    frames = list(source)
    assert len(frames) == 10 and source.dropped >= 5 + 4
