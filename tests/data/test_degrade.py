import numpy as np
import pytest

from lrface.data.degrade import EvalDegradation, TrainDegradation, inter_eye_distance, resize_chips


@pytest.fixture
def chips() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [8, 12, 16, 20, 24, 32])
def test_eval_degradation_sizes_and_determinism(chips, size):
    degrade = EvalDegradation(size)
    out = degrade(chips)
    assert out.shape == (3, size, size, 3) and out.dtype == np.uint8
    assert np.array_equal(out, degrade(chips))
    assert degrade.key == f"s{size}-area"


def test_full_resolution_is_identity(chips):
    assert EvalDegradation(None)(chips) is chips


def test_area_kernel_averages_blocks():
    chip = np.zeros((1, 150, 150, 3), np.uint8)
    chip[:, :75] = 200
    out = EvalDegradation(10, "area")(chip)
    assert np.all(out[0, :5] == 200) and np.all(out[0, 5:] == 0)


def test_resize_back_to_encoder_size(chips):
    low = EvalDegradation(16)(chips)
    assert resize_chips(low, 150, "bicubic").shape == (3, 150, 150, 3)
    with pytest.raises(ValueError, match="unknown resize kernel"):
        resize_chips(low, 150, "sinc")


def test_train_degradation_is_seeded_and_in_range(chips):
    degrade = TrainDegradation(min_size=8, max_size=16, blur_prob=1, noise_prob=1, jpeg_prob=1)
    a = [degrade(c, np.random.default_rng(5)) for c in chips]
    b = [degrade(c, np.random.default_rng(5)) for c in chips]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
        assert 8 <= x.shape[0] <= 16 and x.shape[0] == x.shape[1] and x.shape[2] == 3
    assert degrade(chips[0], np.random.default_rng(1), size=12).shape == (12, 12, 3)


def test_inter_eye_distance_scales_with_size():
    assert inter_eye_distance(150) == pytest.approx(49.5)
    assert inter_eye_distance(16) == pytest.approx(5.28)


def _bright_centre(chip: np.ndarray) -> tuple[float, float, float]:
    """Centroid (x, y) of the bright pixels and their distance from the chip centre."""
    ys, xs = np.nonzero(chip[..., 0] > 128)
    x, y = xs.mean(), ys.mean()
    return x, y, float(np.hypot(x - 74.5, y - 74.5))


def test_jitter_moves_within_its_bounds_and_is_off_by_default():
    chip = np.zeros((150, 150, 3), np.uint8)
    chip[70:80, 100:110] = 255  # a square 30 px right of the centre
    plain = dict(blur_prob=0, noise_prob=0, jpeg_prob=0, kernels=["area"])
    untouched = TrainDegradation(**plain)(chip, np.random.default_rng(0), size=150)
    assert np.array_equal(untouched, chip)
    shifted = TrainDegradation(jitter_shift=0.05, **plain)
    rotated = TrainDegradation(jitter_degrees=30, **plain)
    moves = []
    for seed in range(20):
        x, y, _ = _bright_centre(shifted(chip, np.random.default_rng(seed), size=150))
        assert abs(x - 104.5) <= 7.6 and abs(y - 74.5) <= 7.6  # 5% of 150 px
        moves.append(abs(x - 104.5) + abs(y - 74.5))
        _, _, radius = _bright_centre(rotated(chip, np.random.default_rng(seed), size=150))
        assert radius == pytest.approx(30.0, abs=1.0)  # rotation about the centre
    assert max(moves) > 2.0


def test_erasing_fills_one_rectangle_of_the_asked_area_and_is_off_by_default():
    chip = np.full((150, 150, 3), 128, np.uint8)
    plain = dict(blur_prob=0, noise_prob=0, jpeg_prob=0, kernels=["area"])
    assert np.array_equal(
        TrainDegradation(**plain)(chip, np.random.default_rng(0), size=32),
        np.full((32, 32, 3), 128, np.uint8),
    )
    erasing = TrainDegradation(erase_prob=1.0, erase_area=(0.1, 0.2), **plain)
    for seed in range(20):
        out = erasing(chip, np.random.default_rng(seed), size=32)
        changed = np.any(out != 128, axis=2)
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        assert changed.sum() <= box <= 0.2 * 32 * 32 + 32  # one rectangle, rounding allowed
        assert box >= 0.1 * 32 * 32 - 32


@pytest.mark.parametrize(
    "bad", [{"erase_prob": 1.5}, {"erase_area": (0.0, 0.2)}, {"erase_area": (0.3, 0.2)}]
)
def test_erasing_settings_are_checked(bad):
    with pytest.raises(ValueError, match="erase"):
        TrainDegradation(**bad)


def test_color_jitter_moves_brightness_within_its_strength_and_keeps_the_stream_when_off():
    rng = np.random.default_rng(0)
    chip = rng.integers(60, 200, (150, 150, 3), dtype=np.uint8)
    plain = dict(blur_prob=0, noise_prob=0, jpeg_prob=0, kernels=["area"])
    base = TrainDegradation(**plain)
    off = TrainDegradation(color_prob=0.0, **plain)  # off: same RNG draws, same output
    assert np.array_equal(base(chip, np.random.default_rng(3)), off(chip, np.random.default_rng(3)))
    jitter = TrainDegradation(color_prob=1.0, color_strength=0.3, **plain)
    reference = base(chip, np.random.default_rng(0), size=32).astype(float)
    ratios = []
    for seed in range(20):
        out = jitter(chip, np.random.default_rng(seed), size=32).astype(float)
        assert out.shape == reference.shape
        ratios.append(out.mean() / reference.mean())
    assert min(ratios) > 0.6 and max(ratios) < 1.4 and np.std(ratios) > 0.03


@pytest.mark.parametrize("bad", [{"color_prob": -0.1}, {"color_strength": 1.0}])
def test_color_settings_are_checked(bad):
    with pytest.raises(ValueError, match="color"):
        TrainDegradation(**bad)


KEYS = ["a3" * 20, "b4" * 20, "c5" * 20]


@pytest.mark.parametrize("preset", ["cctv", "ir"])
def test_presets_are_seeded_per_image_not_per_position(chips, preset):
    degrade = EvalDegradation(16, preset=preset)
    out = degrade(chips, KEYS)
    assert out.shape == (3, 16, 16, 3) and np.array_equal(out, degrade(chips, KEYS))
    # the same image gives the same pixels alone or in another batch order
    assert np.array_equal(degrade(chips[2:], KEYS[2:])[0], out[2])
    assert np.array_equal(degrade(chips[::-1], KEYS[::-1])[0], out[2])
    assert not np.array_equal(out, EvalDegradation(16)(chips))
    assert not np.array_equal(out, EvalDegradation(16, preset=preset, seed=1)(chips, KEYS))
    assert degrade.key == f"s16-area-{preset}-v1-seed0"


def test_ir_is_grey_and_presets_need_keys(chips):
    out = EvalDegradation(24, preset="ir")(chips, KEYS)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    with pytest.raises(ValueError, match="needs one image key per chip"):
        EvalDegradation(24, preset="ir")(chips)
    with pytest.raises(ValueError, match="unknown degradation 'fog'"):
        EvalDegradation(24, preset="fog")
    assert EvalDegradation(None, preset="cctv")(chips, KEYS) is chips


def test_camera_effects_of_training_and_clean_share():
    chip = np.random.default_rng(1).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    grey = TrainDegradation(gray_prob=1.0, blur_prob=0, noise_prob=0, jpeg_prob=0)
    out = grey(chip, np.random.default_rng(0), size=20)
    assert np.array_equal(out[..., 0], out[..., 2])
    clean = TrainDegradation(clean_prob=1.0, gray_prob=1.0, noise_prob=1.0, jpeg_prob=1.0)
    resized = clean(chip, np.random.default_rng(0), size=20)
    assert not np.array_equal(resized[..., 0], resized[..., 2])  # colour kept: no effect ran
    with pytest.raises(ValueError, match="light_prob"):
        TrainDegradation(light_prob=1.5)


def test_one_sided_light_darkens_one_side():
    from lrface.data.degrade import one_sided_light

    flat = np.full((10, 10, 3), 200, np.uint8)
    lit_from_left = one_sided_light(flat, 0.8, 0.0)
    assert lit_from_left[:, 0].mean() > 190 and lit_from_left[:, -1].mean() < 50
