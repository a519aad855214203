"""Unlabelled face folders: listing, tight-crop alignment with its fallback, labels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lrface.data.unlabelled import label_free_labels, list_face_folder, unlabelled_chips
from lrface.detect.dlib_align import TIGHT_CROP_ALIGN, AlignSettings
from tests.conftest import LFW_ROOT


def test_listing_is_sorted_and_skips_other_files(tmp_path):
    for name in ("b.jpg", "a.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert list_face_folder(tmp_path) == ["a.png", "b.jpg"]
    with pytest.raises(FileNotFoundError, match="not a directory"):
        list_face_folder(tmp_path / "missing")


def test_label_free_labels_follow_the_labelled_ones():
    assert label_free_labels(3, first=5).tolist() == [5, 6, 7]


def test_tight_crop_settings_never_use_the_lfw_box():
    assert not TIGHT_CROP_ALIGN.centre_fallback and TIGHT_CROP_ALIGN.whole_image_fallback
    assert TIGHT_CROP_ALIGN.key != AlignSettings().key
    with pytest.raises(ValueError, match="one fallback"):
        AlignSettings(centre_fallback=True, whole_image_fallback=True)


def test_a_faceless_crop_is_aligned_by_the_whole_image_and_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(folder / "flat.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    chips = unlabelled_chips(folder, progress=False)
    assert chips.relpaths == ["flat.png"] and chips.fallbacks == {"flat.png"}
    assert chips.chips.shape == (1, 150, 150, 3)
    assert "broken.jpg" in chips.failures and "not an image" in chips.failures["broken.jpg"]
    again = unlabelled_chips(folder, exclude={"flat.png"}, progress=False)
    assert len(again) == 0


@pytest.mark.skipif(LFW_ROOT is None, reason="needs ../shared/data/lfw (LFW not present)")
def test_a_tight_crop_of_a_real_face_is_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
    lfw = LFW_ROOT
    image = Image.open(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg").crop((70, 70, 180, 180))
    folder = tmp_path / "faces"
    folder.mkdir()
    image.resize((200, 200)).save(folder / "tight.png")
    chips = unlabelled_chips(folder, progress=False)
    assert chips.relpaths == ["tight.png"] and not chips.fallbacks


def test_a_faceless_image_outside_lfw_is_listed_not_cut_by_the_lfw_box(tmp_path, monkeypatch):
    from lrface.data.chips import aligned_chips

    monkeypatch.setenv("LRFACE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((250, 250, 3), 90, np.uint8)).save(folder / "wall.png")
    chips = aligned_chips(folder, ["wall.png"], progress=False)
    assert len(chips) == 0 and "no face found" in chips.failures["wall.png"]
    (folder / "pairs.txt").write_text("1 1\n")  # an LFW-shaped root keeps LFW's fallback
    lfw_like = aligned_chips(folder, ["wall.png"], progress=False)
    assert lfw_like.fallbacks == {"wall.png"}
