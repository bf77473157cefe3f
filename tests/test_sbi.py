"""Self-Blended Images: masks stay on the face, the clip shares one artefact, fallbacks for missing landmarks."""

import sys
import types

import cv2
import numpy as np
import pytest

from streamdetect.training.sbi import (
    MIN_VISIBLE,
    BlendParams,
    examples_grid,
    face_hull_mask,
    resolve_landmarks,
    sample_params,
    self_blend,
    self_blend_clip,
)

S = 112
CENTRE, AXES = (56, 56), (32, 40)  # the drawn skin ellipse


def synthetic_face(size=S, seed=0, dx=0):
    """A skin-coloured ellipse with eyes and a mouth on a textured background, and 468 landmarks on/in it."""
    rng = np.random.default_rng(seed)
    k = size / S
    img = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 1.5 * k)
    c = (round(CENTRE[0] * k) + dx, round(CENTRE[1] * k))
    cv2.ellipse(img, c, (round(AXES[0] * k), round(AXES[1] * k)), 0, 0, 360, (224, 172, 140), -1)
    cv2.circle(img, (c[0] - round(12 * k), c[1] - round(8 * k)), round(4 * k), (40, 30, 30), -1)
    cv2.circle(img, (c[0] + round(12 * k), c[1] - round(8 * k)), round(4 * k), (40, 30, 30), -1)
    cv2.ellipse(img, (c[0], c[1] + round(20 * k)), (round(10 * k), round(4 * k)), 0, 0, 360, (170, 60, 60), -1)
    img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)  # skin texture
    a = rng.uniform(0, 2 * np.pi, 468)
    r = np.sqrt(rng.uniform(0, 1, 468))
    r[:64] = 1.0  # a ring on the face outline
    lm = np.stack([c[0] + (AXES[0] - 2) * k * r * np.cos(a), c[1] + (AXES[1] - 2) * k * r * np.sin(a)], 1)
    return img, lm.astype(np.float32)


def ellipse_mask(size=S, dx=0):
    k = size / S
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(m, (round(CENTRE[0] * k) + dx, round(CENTRE[1] * k)), (round(AXES[0] * k), round(AXES[1] * k)), 0, 0, 360, 1, -1)
    return m.astype(bool)


def clip(t=6, seed=0, moving=False, size=S):
    faces = [synthetic_face(size, seed, dx=(i if moving else 0)) for i in range(t)]
    return np.stack([f for f, _ in faces]), np.stack([lm for _, lm in faces])


def test_hull_mask_inside_face():
    img, lm = synthetic_face()
    hull = face_hull_mask(lm, S)
    assert hull.shape == (S, S) and hull.dtype == np.float32
    assert set(np.unique(hull)) == {0.0, 1.0}
    assert not (hull.astype(bool) & ~ellipse_mask()).any()
    assert hull.sum() > 0.7 * ellipse_mask().sum()  # and it covers most of it


def test_hull_mask_units_and_fallback():
    _, lm = synthetic_face()
    unit = np.concatenate([lm / S, np.zeros((468, 1), np.float32)], axis=1)  # what `prepare` stores: (468, 3) 0..1
    assert np.array_equal(face_hull_mask(unit, S), face_hull_mask(lm, S))
    nan = np.full((468, 2), np.nan, np.float32)
    fallback = face_hull_mask(nan, S)
    assert fallback[S // 2, S // 2] == 1 and fallback[0, 0] == 0 and fallback[:, S // 2].sum() == pytest.approx(0.72 * S, abs=3)


@pytest.mark.parametrize("seed", range(12))
def test_fake_differs_only_inside_mask(seed):
    frames, lms = clip()
    fakes, masks = self_blend_clip(frames, lms, np.random.default_rng(seed))
    assert fakes.shape == frames.shape and fakes.dtype == np.uint8
    assert masks.shape == frames.shape[:3] and masks.dtype == np.float32
    assert masks.min() >= 0 and masks.max() <= 1
    outside = masks == 0
    assert np.array_equal(fakes[outside], frames[outside])  # exactly equal outside the mask
    hull = face_hull_mask(lms[0], S).astype(bool)
    assert not masks[:, ~hull].any()  # the mask never leaves the (undeformed) face hull
    diff = np.abs(fakes.astype(int) - frames.astype(int)).mean(-1)
    assert diff[masks > 0.05].mean() >= MIN_VISIBLE * 0.9  # something visible happened inside
    assert (diff > 0).any(axis=(1, 2)).all()  # in every frame


@pytest.mark.parametrize("transform_source", [True, False])
@pytest.mark.parametrize("frequency", ["sharpen", "downscale", "none"])
def test_explicit_params_both_directions(transform_source, frequency):
    frames, lms = clip(3)
    p = BlendParams(transform_source=transform_source, frequency=frequency, brightness=0.05, shift=(0.02, 0.0), ratio=0.75)
    fakes, masks = self_blend_clip(frames, lms, np.random.default_rng(0), params=p)
    assert np.array_equal(fakes[masks == 0], frames[masks == 0])
    assert masks.max() == pytest.approx(0.75)
    assert np.abs(fakes.astype(int) - frames.astype(int))[masks > 0.3].mean() > 1.0


def test_clip_consistency():
    frames, lms = clip(6)
    frames = np.stack([np.roll(f, i, axis=0) for i, f in enumerate(frames)])  # content changes, landmarks do not
    p = sample_params(np.random.default_rng(3))
    _, masks = self_blend_clip(frames, lms, np.random.default_rng(0), params=p)
    for m in masks[1:]:
        assert np.array_equal(m, masks[0])  # same mask (hence same support) in every frame
    # Flicker: same support, different strength per frame.
    _, jittered = self_blend_clip(frames, lms, np.random.default_rng(0), params=p, frame_jitter=0.2)
    for m in jittered:
        assert np.array_equal(m > 0, masks[0] > 0)
    assert len({float(m.max()) for m in jittered}) > 1


def test_mask_follows_moving_face():
    frames, lms = clip(4, moving=True)
    p = sample_params(np.random.default_rng(1))
    fakes, masks = self_blend_clip(frames, lms, np.random.default_rng(0), params=p)
    for i in range(4):
        assert not (masks[i] > 0)[~ellipse_mask(dx=i)].any()
    assert not np.array_equal(masks[0], masks[3])


def test_deterministic_for_seed():
    frames, lms = clip(4)
    a = self_blend_clip(frames, lms, np.random.default_rng(7), frame_jitter=0.1)
    b = self_blend_clip(frames, lms, np.random.default_rng(7), frame_jitter=0.1)
    c = self_blend_clip(frames, lms, np.random.default_rng(8), frame_jitter=0.1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert sample_params(np.random.default_rng(1)) == sample_params(np.random.default_rng(1))


def test_nan_landmarks_use_nearest_frame():
    frames, lms = clip(5, moving=True)
    lms[2:4] = np.nan  # frames 2 and 3 lost their landmarks; 2 -> 1 (tie goes earlier), 3 -> 4
    resolved = resolve_landmarks(lms, 5, S)
    assert np.array_equal(resolved[2], lms[1]) and np.array_equal(resolved[3], lms[4])
    p = sample_params(np.random.default_rng(2))
    fakes, masks = self_blend_clip(frames, lms, np.random.default_rng(0), params=p)
    assert np.array_equal(masks[2], masks[1]) and np.array_equal(masks[3], masks[4])
    assert np.isfinite(masks).all() and np.array_equal(fakes[masks == 0], frames[masks == 0])


@pytest.mark.parametrize("landmarks", ["nan", "none", "degenerate"])
def test_no_landmarks_fall_back_to_central_ellipse(landmarks):
    frames, lms = clip(3)
    lm = {"nan": np.full_like(lms, np.nan), "none": None, "degenerate": np.full_like(lms, 50.0)}[landmarks]
    fakes, masks = self_blend_clip(frames, lm, np.random.default_rng(0))
    central = np.zeros((S, S), np.uint8)
    cv2.ellipse(central, (S // 2, S // 2), (round(0.3 * S) + 1, round(0.36 * S) + 1), 0, 0, 360, 1, -1)
    assert masks.max() > 0 and not (masks > 0)[:, ~central.astype(bool)].any()
    assert np.array_equal(fakes[masks == 0], frames[masks == 0])
    assert (fakes != frames).any()


def test_flat_image_is_not_a_no_op():
    """Sharpening, downscaling and shifting do nothing to a flat face: the guard must still make a visible fake."""
    img = np.full((S, S, 3), 200, np.uint8)
    _, lm = synthetic_face()
    for seed in range(8):
        fake, mask = self_blend(img, lm, np.random.default_rng(seed))
        assert np.abs(fake.astype(int) - img.astype(int)).mean(-1)[mask > 0.05].mean() >= MIN_VISIBLE * 0.9


def test_single_image_and_224():
    img, lm = synthetic_face(224)
    fake, mask = self_blend(img, lm, np.random.default_rng(0))
    assert fake.shape == (224, 224, 3) and fake.dtype == np.uint8 and mask.shape == (224, 224)
    assert np.array_equal(fake[mask == 0], img[mask == 0]) and (fake != img).any()
    assert not (mask > 0)[~ellipse_mask(224)].any()


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        self_blend_clip(np.zeros((2, S, S, 3), np.float32), None, np.random.default_rng(0))
    with pytest.raises(ValueError):
        self_blend_clip(np.zeros((2, S, S, 3), np.uint8), np.zeros((3, 468, 2), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError):
        BlendParams(frequency="blur")


def test_examples_grid_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the train extra) is not installed")
    frames, lms = clip(4)
    out = examples_grid(frames, lms, tmp_path / "sbi.png", n=3)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] > img.shape[1] / 4 * 3 * 0.9  # 3 rows of 4 columns


def test_examples_grid_uses_plots_image_grid(tmp_path, monkeypatch):
    calls = []
    fake_plots = types.ModuleType("streamdetect.training.plots")
    fake_plots.image_grid = lambda images, titles, cols, path: calls.append((images, titles, cols, path))
    monkeypatch.setitem(sys.modules, "streamdetect.training.plots", fake_plots)
    frames, lms = clip(8)
    examples_grid(frames, lms, tmp_path / "g.png", n=2)
    (images, titles, cols, path), = calls
    assert cols == 4 and len(images) == len(titles) == 8 and path == tmp_path / "g.png"
    assert titles[:4] == ["real", titles[1], "mask", "|diff| x4"] and titles[1].startswith("self-blended")
    assert all(im.shape == (S, S, 3) and im.dtype == np.uint8 for im in images)


def test_examples_grid_without_matplotlib(tmp_path, monkeypatch):
    from streamdetect.errors import MissingDependencyError

    def no_matplotlib(images, titles, cols, path):
        raise MissingDependencyError("matplotlib", "train", "Plotting evaluation figures")

    fake_plots = types.ModuleType("streamdetect.training.plots")
    fake_plots.image_grid = no_matplotlib
    monkeypatch.setitem(sys.modules, "streamdetect.training.plots", fake_plots)
    frames, lms = clip(2)
    with pytest.raises(MissingDependencyError, match=r"streamdetect\[train\]"):
        examples_grid(frames, lms, tmp_path / "g.png", n=2)


def test_crop_unit_landmarks_with_z_match_pixels():
    frames, lms = clip(3, moving=True)
    unit = np.concatenate([lms / S, np.zeros((*lms.shape[:2], 1), np.float32)], axis=2)  # prepare's (T, 468, 3)
    a = self_blend_clip(frames, lms, np.random.default_rng(4))
    b = self_blend_clip(frames, unit, np.random.default_rng(4))
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])
