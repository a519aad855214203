import numpy as np
import pytest
from PIL import Image

from lrface.data.images import BadImageError, load_rgb


def test_modes_are_converted_to_rgb(tmp_path):
    cases = {
        "gray.png": Image.new("L", (8, 6), 100),
        "rgba.png": Image.new("RGBA", (8, 6), (10, 20, 30, 255)),
        "cmyk.jpg": Image.new("CMYK", (8, 6), (0, 0, 0, 0)),
        "deep.png": Image.fromarray(np.full((6, 8), 65535, np.uint16)),
        "pal.png": Image.new("P", (8, 6), 3),
    }
    for name, img in cases.items():
        img.save(tmp_path / name)
        arr = load_rgb(tmp_path / name)
        assert arr.shape == (6, 8, 3) and arr.dtype == np.uint8, name
    assert load_rgb(tmp_path / "deep.png").max() == 255
    assert tuple(load_rgb(tmp_path / "rgba.png")[0, 0]) == (10, 20, 30)


def test_bad_files_name_the_file_and_reason(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    Image.new("RGB", (64, 64), 50).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    expectations = {
        "empty.jpg": "empty file",
        "text.jpg": "not an image",
        "truncated.jpg": "corrupt or truncated",
        "missing.jpg": "no such file",
    }
    for name, reason in expectations.items():
        with pytest.raises(BadImageError, match=reason) as info:
            load_rgb(tmp_path / name)
        assert name in str(info.value)


def test_huge_image_is_refused(tmp_path, monkeypatch):
    import lrface.data.images as images

    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    with pytest.raises(BadImageError, match="too large"):
        load_rgb(tmp_path / "big.png")


def test_pil_bomb_warning_becomes_our_one_error(tmp_path, monkeypatch):
    import warnings

    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # PIL warns from 6,000, fails at 12,000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BadImageError, match="big.png: image too large"):
            load_rgb(tmp_path / "big.png")
    assert not caught


def test_a_directory_is_not_called_missing(tmp_path):
    with pytest.raises(BadImageError, match="is a directory, not an image file"):
        load_rgb(tmp_path)
