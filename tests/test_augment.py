"""Clip-consistent augmentation: one set of random choices per clip, real H.264, strict config."""

import dataclasses
import warnings

import cv2
import numpy as np
import pytest

from streamdetect.training import augment
from streamdetect.training.augment import AugmentConfig, augment_clip, h264_roundtrip, jpeg_roundtrip

S = 112
OFF = dict(hflip=0.0, colour=0.0, blur=0.0, downscale=0.0, noise=0.0, jpeg=0.0, h264=0.0)


def only(**on):
    return AugmentConfig(**{**OFF, **on})


def face(seed=0, dx=0):
    """A face-like image: a skin ellipse with eyes and a mouth on a smooth textured background."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (S, S, 3), dtype=np.uint8), (0, 0), 2.0)
    cv2.ellipse(img, (56 + dx, 56), (32, 40), 0, 0, 360, (224, 172, 140), -1)
    cv2.circle(img, (44 + dx, 48), 4, (40, 30, 30), -1)
    cv2.circle(img, (68 + dx, 48), 4, (40, 30, 30), -1)
    cv2.ellipse(img, (56 + dx, 76), (10, 4), 0, 0, 360, (170, 60, 60), -1)
    return np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)


def moving_clip(t=8):
    return np.stack([face(0, dx=i) for i in range(t)])


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_hflip_flips_every_frame():
    clip = moving_clip()
    for seed in range(3):
        out = augment_clip(clip, np.random.default_rng(seed), only(hflip=1.0))
        assert np.array_equal(out, clip[:, :, ::-1])


def test_colour_is_one_transform_for_the_clip():
    a, b = face(1), face(2)
    clip = np.stack([a, b, a, b, a])
    for seed in range(5):
        out = augment_clip(clip, np.random.default_rng(seed), only(colour=1.0))
        assert np.array_equal(out[0], out[2]) and np.array_equal(out[2], out[4]) and np.array_equal(out[1], out[3])
        assert not np.array_equal(out, clip)


def test_every_frame_independent_op_is_the_same_for_the_clip():
    """Identical frames stay identical under everything but the per-frame noise pattern and H.264's P-frames."""
    a, b = face(1), face(2)
    clip = np.stack([a, b, a, b])
    cfg = AugmentConfig(hflip=1, colour=1, blur=1, downscale=1, noise=1, noise_per_frame=False, jpeg=1, h264=0)
    for seed in range(5):
        out = augment_clip(clip, np.random.default_rng(seed), cfg)
        assert np.array_equal(out[0], out[2]) and np.array_equal(out[1], out[3])
        assert not np.array_equal(out[0], clip[0])


def test_sensor_noise_is_fresh_per_frame_by_default():
    clip = np.stack([face(1)] * 3)
    out = augment_clip(clip, np.random.default_rng(0), only(noise=1.0))
    assert not np.array_equal(out[0], out[1])
    d = out.astype(float) - clip
    assert 1.5 < d.std() < 9.0  # sigma 2..8, a little less where clipped


def test_h264_round_trip_changes_pixels_but_keeps_quality():
    clip = moving_clip(8)
    out = h264_roundtrip(clip, 23)
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert not np.array_equal(out, clip)
    assert psnr(out, clip) > 25.0
    assert psnr(h264_roundtrip(clip, 40), clip) < psnr(out, clip)  # higher crf, lower quality


def test_h264_odd_size_and_single_frame():
    clip = moving_clip(3)[:, :111, :111]
    out = h264_roundtrip(np.ascontiguousarray(clip), 30)
    assert out.shape == clip.shape and psnr(out, clip) > 22
    assert h264_roundtrip(moving_clip(1), 30).shape == (1, S, S, 3)


def test_h264_falls_back_to_jpeg_once(monkeypatch):
    monkeypatch.setattr(augment, "_H264", {"ok": False})
    clip = moving_clip(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = h264_roundtrip(clip, 30)
        h264_roundtrip(clip, 30)
    assert len([w for w in caught if "falls back to JPEG" in str(w.message)]) == 1
    assert np.array_equal(out, jpeg_roundtrip(clip, augment._crf_to_jpeg_quality(30)))


def test_jpeg_round_trip():
    clip = moving_clip(2)
    out = jpeg_roundtrip(clip, 30)
    assert out.shape == clip.shape and not np.array_equal(out, clip) and psnr(out, clip) > 25


def test_deterministic_for_seed_and_input_untouched():
    clip = moving_clip()
    before = clip.copy()
    cfg = AugmentConfig(hflip=1, colour=1, blur=1, downscale=1, noise=1, jpeg=1, h264=1)
    a = augment_clip(clip, np.random.default_rng(11), cfg)
    b = augment_clip(clip, np.random.default_rng(11), cfg)
    c = augment_clip(clip, np.random.default_rng(12), cfg)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(clip, before)


def test_default_config_shapes():
    clip = moving_clip()
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = augment_clip(clip, rng)
        assert out.shape == clip.shape and out.dtype == np.uint8 and out.flags.c_contiguous


def test_disabled_returns_input_unchanged():
    clip = moving_clip()
    cfg = AugmentConfig(enabled=False, hflip=1, colour=1, noise=1, h264=1)
    out = augment_clip(clip, np.random.default_rng(0), cfg)
    assert np.array_equal(out, clip)
    assert np.array_equal(augment_clip(clip, np.random.default_rng(0), only()), clip)


def test_from_dict():
    cfg = AugmentConfig.from_dict({"hflip": 0.1, "jpeg_quality": [40, 80], "enabled": True})
    assert cfg.hflip == 0.1 and cfg.jpeg_quality == (40, 80)
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    assert AugmentConfig.from_dict({}) == AugmentConfig() == AugmentConfig.from_dict(None)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError) as e:
        AugmentConfig.from_dict({"hflip": 0.5, "flip_p": 0.5})
    msg = str(e.value)
    assert "'flip_p'" in msg and "valid keys" in msg and "hflip, colour" in msg and "h264_crf" in msg


@pytest.mark.parametrize(
    "bad",
    [{"hflip": 1.5}, {"jpeg_quality": (90, 30)}, {"h264_crf": (23, 60)}, {"downscale_factor": (0.0, 0.5)}, {"blur_sigma": 1.0}],
)
def test_invalid_values(bad):
    with pytest.raises(ValueError):
        AugmentConfig.from_dict(bad)


def test_rejects_non_uint8():
    with pytest.raises(ValueError):
        augment_clip(np.zeros((2, S, S, 3), np.float32), np.random.default_rng(0))


def test_sharpness_matching_lowers_a_sharp_clip_to_its_target_and_leaves_a_soft_one():
    sharp = np.stack([face(3), face(4), face(3)])
    soft = np.stack([augment.down_up(f, 0.4) for f in sharp])
    target = augment.log_sharpness(augment.down_up(sharp[1], 0.6))  # between the two clips
    assert augment.log_sharpness(sharp[1]) > target
    out = augment.match_sharpness(sharp, target)
    assert augment.log_sharpness(out[1]) <= target < augment.log_sharpness(sharp[1])
    assert np.array_equal(out[0], out[2])  # one factor for the whole clip
    assert augment.match_sharpness(soft, target) is soft


def test_sharpness_matching_in_the_clip_augmentation():
    clip = np.stack([face(5)] * 3)
    low = augment.log_sharpness(augment.down_up(clip[0], 0.5))
    cfg = only(sharpness_match=1.0, sharpness_target=(low, low))
    out = augment_clip(clip, np.random.default_rng(0), cfg)
    assert augment.log_sharpness(out[1]) <= low + 1e-9
    # Off (the default) it draws nothing extra: the random stream of an existing config is unchanged.
    base = AugmentConfig(hflip=1, colour=1, blur=1, downscale=1, noise=1, jpeg=1, h264=0)
    a = augment_clip(clip, np.random.default_rng(3), base)
    b = augment_clip(clip, np.random.default_rng(3), dataclasses.replace(base, sharpness_target=(1.0, 2.0)))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        AugmentConfig.from_dict({"sharpness_match": 2.0})
    with pytest.raises(ValueError):
        AugmentConfig.from_dict({"sharpness_target": [6.6, 5.6]})


def erased_box(out, clip):
    """The bounding box (a boolean mask over the frame) of every pixel where `out` differs from `clip`."""
    rows, cols = np.nonzero(np.any(out != clip, axis=(0, -1)))
    box = np.zeros(clip.shape[1:3], bool)
    box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    return box


def test_erasing_fills_one_rectangle_of_the_drawn_area_with_the_clip_mean_in_every_frame():
    clip = moving_clip(4)
    out = augment_clip(clip, np.random.default_rng(1), only(erase=1.0, erase_area=(0.2, 0.2)))
    box = erased_box(out, clip)
    assert 0.17 * S * S <= box.sum() <= 0.23 * S * S  # one rectangle of ~20 % of the crop
    mean = clip.reshape(-1, 3).mean(0).round().astype(np.uint8)
    assert (out[:, box] == mean).all()  # all of it, in every frame, the clip's mean colour
    assert np.array_equal(out[:, ~box], clip[:, ~box])  # nothing else touched
    assert not np.array_equal(out, augment_clip(clip, np.random.default_rng(2), only(erase=1.0)))  # placed anew
    with pytest.raises(ValueError, match="erase_area must lie in"):
        AugmentConfig.from_dict({"erase_area": [0.0, 0.3]})


def test_erasing_is_drawn_after_the_other_choices():
    """Turning erasing on changes only its rectangle: flip and colour keep the draws they had without it."""
    clip = moving_clip(4)
    base = only(hflip=1.0, colour=1.0)
    without = augment_clip(clip, np.random.default_rng(3), base)
    erased = augment_clip(clip, np.random.default_rng(3), dataclasses.replace(base, erase=1.0))
    box = erased_box(erased, without)
    assert 0 < box.sum() < S * S and np.array_equal(erased[:, ~box], without[:, ~box])
