"""Which threshold judges a face pair or a watch-list search: by the encoder that served each
face and each face's resolution (synthetic calibration files, no data)."""

from __future__ import annotations

import json

import pytest

from lrface.calibration import (
    Calibration,
    FaceRef,
    ThresholdBook,
    as_resolution,
    calibration_path,
    nearest_size,
    track_calibration_path,
    track_calibrations,
)

SIZES = (8, 12, 16, 20, 24, 32)


def _write(path, gallery, probe, flip=False, base=0.5, openset=None):
    table = {f"hr-lr@{s}": base + s / 1000 for s in SIZES}
    table |= {f"lr-lr@{s}": base + 0.1 + s / 1000 for s in SIZES}
    table["hr-hr@full"] = base + 0.2
    data = {"gallery_encoder": gallery, "probe_encoder": probe, "flip": flip, "thresholds": table}
    if openset is not None:
        data |= {"openset": openset, "openset_fpir": 0.01}
    path.write_text(json.dumps(data))
    return Calibration.load(path)


@pytest.fixture
def book(tmp_path):
    teacher = _write(
        tmp_path / "teacher.json",
        "T-key",
        "T-key",
        base=0.8,
        openset={"16": 0.91, "24": 0.92, "full": 0.93},
    )
    student = _write(
        tmp_path / "student.json", "T-key", "S-key", base=0.6, openset={"16": 0.71, "full": 0.73}
    )
    return ThresholdBook([student, teacher], {"T-key": {"teacher"}, "S-key": {"student"}})


def test_a_small_face_served_by_the_teacher_is_judged_at_its_resolution(book):
    # the bug: a 14 px face embedded by the teacher was judged with hr-hr@full
    choice = book.pair(FaceRef("T-key", None), FaceRef("T-key", 14))
    assert choice.source.endswith("teacher.json [hr-lr@16]") and choice.threshold == pytest.approx(
        0.816
    )
    assert "14 px" in choice.reason and "hr-lr at 16" in choice.reason
    assert book.pair(FaceRef("T-key", None), FaceRef("T-key", None)).source.endswith("[hr-hr@full]")
    # nearest on a log scale, full size counting as 150 px
    assert book.pair(FaceRef("T-key", 60), FaceRef("T-key", None)).source.endswith("[hr-lr@32]")
    assert book.pair(FaceRef("T-key", 110), FaceRef("T-key", None)).source.endswith("[hr-hr@full]")
    assert book.pair(FaceRef("T-key", 13), FaceRef("T-key", 22)).source.endswith("[lr-lr@12]")


def test_the_file_follows_the_encoder_that_served_each_face(book):
    student = book.pair(FaceRef("T-key", None), FaceRef("S-key", 16))
    assert student.source.endswith(
        "student.json [hr-lr@16]"
    ) and student.threshold == pytest.approx(0.616)
    assert book.pair(FaceRef("S-key", 8), FaceRef("S-key", 16)).source.endswith(
        "student.json [lr-lr@8]"
    )
    mixed = book.pair(FaceRef("T-key", 24), FaceRef("S-key", 16))
    assert mixed.source.endswith("student.json [lr-lr@16]") and "as if S-key" in mixed.reason
    with pytest.raises(ValueError, match="no verification calibration for probe encoder X"):
        book.pair(FaceRef("T-key", None), FaceRef("X", 16))


def test_openset_threshold_by_probe_resolution_and_encoder(book):
    assert book.openset(FaceRef("T-key", 14), "T-key").threshold == 0.91
    assert book.openset(FaceRef("T-key", 26), "T-key").threshold == 0.92
    assert book.openset(FaceRef("T-key", None), "T-key").threshold == 0.93
    student = book.openset(FaceRef("S-key", 12), "T-key")
    assert student.threshold == 0.71 and "FPIR 0.01" in student.reason
    with pytest.raises(ValueError, match="no open-set calibration for probe encoder S-key"):
        book.openset(FaceRef("S-key", 12), "other-gallery")


def test_single_threshold_files_and_refusals(tmp_path):
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"threshold": 0.25, "encoder": "teacher"}))
    calib = Calibration.load(single)
    assert calib.flip is None
    calib.check_flip(False)  # files that do not say are accepted
    choice = ThresholdBook([calib]).pair(FaceRef("teacher", 12), FaceRef("teacher", None))
    assert choice.threshold == 0.25
    flipped = _write(tmp_path / "flip.json", "T", "T", flip=True)
    with pytest.raises(
        ValueError,
        match="flip.json: calibration was measured on embeddings made "
        "with flip averaging but faces here are embedded without",
    ):
        flipped.check_flip(False)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json: calibration file is not valid JSON"):
        Calibration.load(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="is a directory"):
        Calibration.load(tmp_path)


def test_calibration_files_are_found_by_encoder(tmp_path):
    assert calibration_path("dlib-resnet-torch").name == "dlib-resnet-torch.json"
    assert calibration_path(str(tmp_path)) is None
    (tmp_path / "calibration.json").write_text("{}")
    assert calibration_path(str(tmp_path)) == tmp_path / "calibration.json"
    assert calibration_path("no-such-encoder") is None


def test_resolution_helpers():
    assert as_resolution(150) is None and as_resolution(149) == 149
    assert nearest_size(14, [8, 16, None]) == 16 and nearest_size(None, [8, 32]) == 32


def test_a_stored_file_serves_its_encoder_by_name(tmp_path):
    """A shipped student's file may name weights it was measured on before rounding: the file
    stored with the encoder still applies to it by name."""
    calib = _write(tmp_path / "calibration.json", "T-key", "old-student-key", base=0.6)
    calib.owner = "lrface-lr-v1"
    book = ThresholdBook([calib], {"new-student-key": {"lrface-lr-v1"}})
    choice = book.pair(FaceRef("T-key", None), FaceRef("new-student-key", 16))
    assert choice.source.endswith("[hr-lr@16]")


def _track_file(path, probe, openset, gallery="T-key"):
    data = {"probes": "tracks", "gallery_encoder": gallery, "probe_encoder": probe}
    path.write_text(json.dumps(data | {"flip": False, "openset": openset, "openset_fpir": 0.1}))
    return Calibration.load(path)


def test_track_calibrations_judge_tracks_only_and_fall_back_to_single_faces(tmp_path, book):
    tracks = _track_file(tmp_path / "t-tracks.json", "T-key", {"16": 0.81, "48": 0.84})
    assert tracks.tracks and not book.calibrations[0].tracks
    both = ThresholdBook([tracks, *book.calibrations], book.aliases)
    track = both.openset(FaceRef("T-key", 18), "T-key", tracks=True)
    assert track.threshold == 0.81 and track.tracks and "track open-set" in track.reason
    assert track.source.endswith("t-tracks.json [openset@16]")
    # single faces never get a track threshold; a student with no track file falls back
    face = both.openset(FaceRef("T-key", 18), "T-key")
    assert face.threshold == 0.91 and not face.tracks and "single-face" in face.reason
    student = both.openset(FaceRef("S-key", 12), "T-key", tracks=True)
    assert student.threshold == 0.71 and not student.tracks


def test_long_tracks_must_also_clear_the_long_track_threshold(tmp_path):
    path = tmp_path / "t-tracks.json"
    data = {"probes": "tracks", "probe_encoder": "T", "gallery_size": 100, "openset_fpir": 0.1}
    data |= {"openset": {"16": 0.90, "48": 0.95}, "long_track_faces": 16}
    data |= {"openset_long": {"24": 0.93}}
    data["openset_by_gallery_size"] = {"10": {"16": 0.88, "48": 0.93}, "100": data["openset"]}
    data["openset_long_by_gallery_size"] = {"10": {"24": 0.89}, "100": {"24": 0.93}}
    path.write_text(json.dumps(data))
    book = ThresholdBook([Calibration.load(path)])
    short = book.openset(FaceRef("T", 18), "T", tracks=True, faces=15)
    assert short.threshold == 0.90 and short.source.endswith("[openset@16]")
    long = book.openset(FaceRef("T", 18), "T", tracks=True, faces=16)
    assert long.threshold == 0.93 and long.source.endswith("[long@24]")
    assert "a long track (16 faces)" in long.reason
    # the higher of the two applies: at 48 px the size's own threshold is higher
    assert book.openset(FaceRef("T", 48), "T", tracks=True, faces=30).threshold == 0.95
    # by watch-list size as well: for 10 people the long one (0.89) is above the size's (0.88)
    sized = book.openset(FaceRef("T", 18), "T", tracks=True, gallery_size=10, faces=20)
    assert sized.threshold == 0.89 and sized.source.endswith("[long@24, N=10]")
    # unknown length (single faces, callers that do not say): the regular thresholds
    assert book.openset(FaceRef("T", 18), "T", tracks=True).threshold == 0.90
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"probe_encoder": "T", "openset": {"16": 0.9}} | {
        "openset_long": {"24": 0.93}}))  # fmt: skip
    with pytest.raises(ValueError, match="bad.json: 'openset_long' belongs to a track calibration"):
        Calibration.load(bad)


def test_track_calibration_files_are_checked_and_found(tmp_path):
    bad = tmp_path / "kind.json"
    bad.write_text(json.dumps({"probe_encoder": "T", "openset": {"16": 0.9}, "probes": "frames"}))
    with pytest.raises(ValueError, match="kind.json: 'probes' must be 'faces' or 'tracks'"):
        Calibration.load(bad)
    size = tmp_path / "size.json"
    size.write_text(json.dumps({"probe_encoder": "T", "openset": {"16": 0.9}, "gallery_size": 0}))
    with pytest.raises(ValueError, match="size.json: 'gallery_size' must be a positive integer"):
        Calibration.load(size)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"probe_encoder": "T", "threshold": 0.5, "probes": "tracks"}))
    with pytest.raises(ValueError, match="empty.json: track calibration has no 'openset'"):
        Calibration.load(empty)
    assert track_calibration_path(str(tmp_path)) is None
    _track_file(tmp_path / "calibration-tracks.json", "S", {"16": 0.8})
    assert track_calibration_path(str(tmp_path)) == tmp_path / "calibration-tracks.json"
    (found,) = track_calibrations([None, str(tmp_path), "no-such-encoder"])
    assert found.owner == str(tmp_path) and found.openset == {16: 0.8}


def test_track_calibrations_are_stored_where_they_are_found(tmp_path):
    from lrface.calibration import track_calibration_target

    assert track_calibration_target(str(tmp_path)) == tmp_path / "calibration-tracks.json"
    packaged = track_calibration_target("dlib-resnet-torch")
    assert packaged == track_calibration_path("dlib-resnet-torch")  # the shipped one
    assert Calibration.load(packaged).tracks


def test_thresholds_by_watch_list_size_interpolate_on_log_n(tmp_path):
    import math

    from lrface.calibration import for_gallery_size

    ladder = {1: {16: 0.80, 48: 0.85}, 10: {16: 0.90, 48: 0.95}, 100: {16: 0.92, 48: 0.97}}
    assert for_gallery_size(ladder, 16, 10) == (0.90, "for a gallery of 10")
    value, note = for_gallery_size(ladder, 48, 3)
    assert value == pytest.approx(0.85 + 0.10 * math.log(3) / math.log(10))
    assert note == "for a gallery of 3, interpolated between 1 and 10"
    assert for_gallery_size(ladder, 16, 31)[0] == pytest.approx(0.91, abs=0.001)  # mid-decade
    value, note = for_gallery_size(ladder, 16, 5000)
    assert value == 0.92 and "above the largest calibrated size (100)" in note
    assert for_gallery_size(ladder, 16, 0)[0] == 0.80
    # through the book: a file with a ladder, picked for the gallery's size (or its own openset)
    path = tmp_path / "t-tracks.json"
    data = {"probes": "tracks", "probe_encoder": "T", "gallery_size": 100, "openset_fpir": 0.01}
    data |= {"openset": {"16": 0.92, "48": 0.97}}
    data["openset_by_gallery_size"] = {
        str(n): {str(s): t for s, t in by.items()} for n, by in ladder.items()
    }
    path.write_text(json.dumps(data))
    book = ThresholdBook([Calibration.load(path)])
    choice = book.openset(FaceRef("T", 18), "T", tracks=True, gallery_size=3)
    assert choice.threshold == pytest.approx(0.80 + 0.10 * math.log(3) / math.log(10))
    assert choice.for_gallery == "for a gallery of 3, interpolated between 1 and 10"
    assert choice.source.endswith("[openset@16, N=3]") and "for a gallery of 3" in choice.reason
    plain = book.openset(FaceRef("T", 18), "T", tracks=True)
    assert plain.threshold == 0.92 and plain.for_gallery is None


def test_normalized_thresholds_judge_only_searches_scored_that_way(tmp_path, book):
    from lrface.calibration import scoring_calibration_path, scoring_calibration_target

    path = tmp_path / "asnorm.json"
    path.write_text(
        json.dumps(
            {"gallery_encoder": "T-key", "probe_encoder": "S-key", "flip": False,
             "scoring": "asnorm", "openset": {"16": 3.1, "full": 2.9}, "openset_fpir": 0.01}
        )
    )  # fmt: skip
    normalized = Calibration.load(path)
    assert normalized.scoring == "asnorm" and normalized.thresholds == {}
    mixed = ThresholdBook([normalized, *book.calibrations], book.aliases)
    probe = FaceRef("S-key", 16)
    raw = mixed.openset(probe, "T-key")
    assert raw.threshold == book.openset(probe, "T-key").threshold and "asnorm" not in raw.reason
    scored = mixed.openset(probe, "T-key", scoring="asnorm")
    assert scored.threshold == 3.1 and "asnorm-normalized" in scored.reason
    # verification never reads a normalized file, even listed first
    pair = mixed.pair(FaceRef("T-key", None), FaceRef("S-key", 16))
    assert pair.threshold == book.pair(FaceRef("T-key", None), FaceRef("S-key", 16)).threshold
    with pytest.raises(ValueError, match="no snorm open-set calibration"):
        mixed.openset(probe, "T-key", scoring="snorm")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"encoder": "x", "threshold": 0.5, "scoring": 3}))
    with pytest.raises(ValueError, match="'scoring' must be a name"):
        Calibration.load(bad)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    assert scoring_calibration_target(str(checkpoint), "asnorm") == checkpoint / (
        "calibration-asnorm.json"
    )
    assert scoring_calibration_path(str(checkpoint), "asnorm") is None
    assert scoring_calibration_target("lrface-lr-v2", "asnorm").name == "lrface-lr-v2-asnorm.json"


def test_shipped_track_calibrations_were_set_for_the_long_track_length_in_use():
    from lrface.constants import LONG_TRACK_FACES

    folder = track_calibration_path("dlib-resnet-torch").parent  # the packaged calibrations
    shipped = [Calibration.load(p) for p in sorted(folder.glob("*-tracks*.json"))]
    assert shipped and all(c.tracks for c in shipped)
    with_long = [c for c in shipped if c.openset_long]
    assert with_long  # the teacher's, set on the whole-clip tracks of 240 passers-by
    assert all(c.long_track_faces == LONG_TRACK_FACES for c in with_long)
