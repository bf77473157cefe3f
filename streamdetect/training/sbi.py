"""Self-Blended Images (Shiohara & Yamasaki, CVPR 2022, "Detecting Deepfakes with Self-Blended Images").

A fake is made from ONE real face: two copies of the frame are made slightly different (the source-target
generator), and the source is pasted onto the target through a soft, randomly deformed face mask (the mask
generator). What is left is what every face swap leaves: a blending boundary, a colour/frequency mismatch
between the inner face and its surroundings, and a slight misregistration, without any identity cue a
detector could overfit to.

Source-target generator (as in the paper's code):
    colour: RGB shift (p=0.3, +-20), hue/saturation, brightness/contrast (+-10 %);
    frequency: sharpen, or downscale-upscale (one of the two);
    geometry: a small translation (+-3 % x, +-1.5 % y) and scale (0.95 .. 1/0.95) of the source.
    The colour/frequency change is put on the source or the target with even odds. Here the target's
    surroundings must stay pixel-identical to the real frame (the pair then differs only inside the face), so
    "change the target" is realised as the OPPOSITE change on the face: source = 2 x - T(x). The blended
    fake then differs from the real frame by exactly m * (x - T(x)), the same residual the paper's pair has.
Mask generator:
    convex hull of the landmarks (sometimes without the top of the forehead), a random elastic deformation,
    random anisotropic erosion or dilation, a Gaussian blur with a random kernel, then x the UNDEFORMED hull so
    the mask never leaves the face, times a blending ratio r in {0.25, 0.5, 0.75, 1, 1, 1}.

Video: every random choice lives in a `BlendParams`, drawn once per clip, so the artefact is the same along a
clip as in a real deepfake; `frame_jitter` adds small per-frame changes of the ratio and the source shift to
imitate the flicker of frame-by-frame swaps.

Landmarks: (T, N, 2) (or (T, N, 3), z ignored) in crop pixels; values all within [-2, 2] are taken as crop
units (0..1, what `prepare` stores) and scaled by S. A frame with any non-finite or degenerate landmarks uses
the nearest good frame's; a clip with none uses an ellipse centred in the crop (60 % wide, 72 % tall).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamdetect.training.augment import apply_colour, colour_matrix

__all__ = [
    "BLEND_RATIOS",
    "BlendParams",
    "sample_params",
    "face_hull_mask",
    "resolve_landmarks",
    "self_blend_clip",
    "self_blend",
    "examples_grid",
]

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
FALLBACK_AXES = (0.30, 0.36)  # half-axes (x, y) of the no-landmarks ellipse, as fractions of the crop side
MIN_VISIBLE = 1.0  # mean |fake - real| (grey levels) over the mask below which a sampled draw counts as a no-op
_MAX_TRIES = 4


@dataclass(frozen=True)
class BlendParams:
    """Everything random about one self-blend, drawn once per clip. Lengths are fractions of the crop side."""

    # source-target generator
    transform_source: bool = True  # False: the change goes to the target, i.e. the opposite change to the face
    rgb_shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # added per channel, uint8 units
    hue: float = 0.0  # degrees (YIQ rotation)
    saturation: float = 1.0
    brightness: float = 0.0  # added, fraction of 255
    contrast: float = 1.0  # about mid-grey
    frequency: str = "sharpen"  # "sharpen" | "downscale" | "none"
    sharpen: float = 0.5  # unsharp-mask amount
    downscale: float = 2.0  # > 1: down by this factor (INTER_AREA), back up (INTER_LINEAR)
    shift: tuple[float, float] = (0.0, 0.0)  # source translation (x, y)
    scale: float = 1.0  # source scale about the crop centre
    # mask generator
    top_cut: float = 0.0  # fraction of the hull's height removed from its top (no forehead)
    deform: float = 0.0  # elastic displacement amplitude
    deform_cells: int = 8  # smoothness of the displacement field (cells across the crop)
    deform_seed: int = 0
    morph: tuple[float, float] = (0.0, 0.0)  # (x, y) dilation (> 0) or erosion (< 0) radius
    blur: tuple[float, float] = (0.08, 0.08)  # Gaussian kernel size (x, y)
    blur_sigma: float = 0.3  # Gaussian sigma as a fraction of the kernel size
    ratio: float = 1.0  # blending ratio: the mask's maximum

    def __post_init__(self):
        if self.frequency not in ("sharpen", "downscale", "none"):
            raise ValueError(f"frequency must be 'sharpen', 'downscale' or 'none', got {self.frequency!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if self.downscale < 1.0 or self.scale <= 0 or self.deform_cells < 1:
            raise ValueError("downscale must be >= 1, scale > 0 and deform_cells >= 1")


def sample_params(rng: np.random.Generator) -> BlendParams:
    """Draw one self-blend (the paper's ranges, scaled to the crop). Every value is drawn on every call, in a
    fixed order, so a seed gives the same stream whatever branches are taken."""
    transform_source = bool(rng.random() < 0.5)
    use_rgb = rng.random() < 0.3
    rgb = rng.uniform(-20.0, 20.0, 3)
    use_hs = rng.random() < 0.5
    hue = rng.uniform(-5.0, 5.0)
    sat = rng.uniform(0.9, 1.1)
    brightness = rng.uniform(-0.1, 0.1)
    contrast = rng.uniform(0.9, 1.1)
    frequency = "downscale" if rng.random() < 0.5 else "sharpen"
    sharpen = rng.uniform(0.3, 1.0)
    downscale = rng.uniform(1.5, 3.0)
    shift = (rng.uniform(-0.03, 0.03), rng.uniform(-0.015, 0.015))
    scale = rng.uniform(0.95, 1 / 0.95)
    cut = rng.random() < 0.25
    top_cut = rng.uniform(0.1, 0.3)
    deform = rng.uniform(0.005, 0.03)
    cells = int(rng.integers(4, 13))
    seed = int(rng.integers(0, 2**31 - 1))
    erode = rng.random() < 0.7
    morph = rng.uniform(0.0, 0.06, 2) if erode else rng.uniform(0.0, 0.025, 2)
    blur = rng.uniform(0.03, 0.15, 2)
    blur_sigma = rng.uniform(0.15, 0.5)
    ratio = float(BLEND_RATIOS[int(rng.integers(len(BLEND_RATIOS)))])
    return BlendParams(
        transform_source=transform_source,
        rgb_shift=tuple(float(v) for v in rgb) if use_rgb else (0.0, 0.0, 0.0),
        hue=float(hue) if use_hs else 0.0,
        saturation=float(sat) if use_hs else 1.0,
        brightness=float(brightness),
        contrast=float(contrast),
        frequency=frequency,
        sharpen=float(sharpen),
        downscale=float(downscale),
        shift=(float(shift[0]), float(shift[1])),
        scale=float(scale),
        top_cut=float(top_cut) if cut else 0.0,
        deform=float(deform),
        deform_cells=cells,
        deform_seed=seed,
        morph=tuple(float(-v if erode else v) for v in morph),
        blur=(float(blur[0]), float(blur[1])),
        blur_sigma=float(blur_sigma),
        ratio=ratio,
    )


# -- landmarks and hulls ----------------------------------------------------------------------------------------
def _fallback_points(size: int, n: int = 64) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c = size / 2.0
    return np.stack([c + FALLBACK_AXES[0] * size * np.cos(a), c + FALLBACK_AXES[1] * size * np.sin(a)], 1).astype(np.float32)


def _to_pixels(points: np.ndarray, size: int, normalized: bool | None) -> np.ndarray:
    points = np.asarray(points, dtype=np.float32)[..., :2]
    if normalized is None:
        finite = points[np.isfinite(points)]
        normalized = finite.size > 0 and float(np.abs(finite).max()) <= 2.0
    return points * np.float32(size) if normalized else points


def _usable(points: np.ndarray, size: int) -> np.ndarray:
    """(T,) whether each frame's (N, 2) pixel landmarks are finite and span a plausible face (>= 10 % of S)."""
    finite = np.isfinite(points).all(axis=(-2, -1))
    with np.errstate(invalid="ignore"):
        span = np.nan_to_num(points.max(axis=-2) - points.min(axis=-2), nan=0.0).min(axis=-1)
    return finite & (span >= 0.1 * size) & (points.shape[-2] >= 3)


def resolve_landmarks(landmarks, frames: int, size: int, normalized: bool | None = None) -> np.ndarray:
    """(T, N, 2) float32 pixel landmarks with missing frames filled: a frame with NaN (or degenerate) landmarks
    takes the nearest good frame's (the earlier one on a tie); with no good frame at all, every frame gets 64
    points on an ellipse centred in the crop. `landmarks` may be None, (N, 2|3) for all frames, or (T, N, 2|3)."""
    if landmarks is None:
        return np.broadcast_to(_fallback_points(size), (frames, 64, 2)).copy()
    pts = _to_pixels(landmarks, size, normalized)
    if pts.ndim == 2:
        pts = np.broadcast_to(pts, (frames, *pts.shape))
    if pts.ndim != 3 or pts.shape[0] != frames:
        raise ValueError(f"landmarks must be (N, 2|3) or ({frames}, N, 2|3), got {np.shape(landmarks)}")
    good = np.flatnonzero(_usable(pts, size))
    if good.size == 0:
        return np.broadcast_to(_fallback_points(size), (frames, 64, 2)).copy()
    if good.size == frames:
        return np.ascontiguousarray(pts)
    nearest = good[np.abs(np.arange(frames)[:, None] - good[None, :]).argmin(axis=1)]
    return np.ascontiguousarray(pts[nearest])


def _hull_u8(points: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    pts = points[np.isfinite(points).all(axis=1)]
    if len(pts) < 3:
        pts = _fallback_points(size)
    pts = np.clip(pts, -size, 2 * size)
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))  # 4 fractional bits: sub-pixel accurate edges
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask


def face_hull_mask(landmarks: np.ndarray, size: int, normalized: bool | None = None) -> np.ndarray:
    """(size, size) float32 mask, 1 inside the convex hull of the landmarks ((N, 2|3), crop pixels or crop
    units, see the module notes), 0 outside. Fewer than 3 finite points give the fallback ellipse."""
    return _hull_u8(_to_pixels(landmarks, size, normalized), size).astype(np.float32)


# -- the generators ---------------------------------------------------------------------------------------------
def _odd(n: float) -> int:
    return max(1, int(round(n)) // 2 * 2 + 1)


def _deform_maps(p: BlendParams, size: int):
    """remap() coordinates for the elastic deformation; from the params alone, so the same along a clip."""
    if p.deform <= 0:
        return None
    g = np.random.default_rng(p.deform_seed).uniform(-1.0, 1.0, (2, p.deform_cells + 1, p.deform_cells + 1))
    field = [cv2.resize(c.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC) for c in g]
    amp = np.float32(p.deform * size) / np.float32(max(np.abs(field[0]).max(), np.abs(field[1]).max(), 1e-6))
    xs, ys = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    return xs + field[0] * amp, ys + field[1] * amp


def _blend_mask(points: np.ndarray, size: int, p: BlendParams, maps) -> np.ndarray:
    """The soft mask (max 1) for one frame, before the ratio; zero outside the undeformed hull."""
    hull = _hull_u8(points, size)
    m = hull.copy()
    if p.top_cut > 0:
        rows = np.flatnonzero(hull.any(axis=1))
        if rows.size:
            m[: rows[0] + int(round(p.top_cut * (rows[-1] - rows[0] + 1)))] = 0
    m = m.astype(np.float32)
    if maps is not None:
        m = cv2.remap(m, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    before = m
    erode = [max(0.0, -v) for v in p.morph]
    dilate = [max(0.0, v) for v in p.morph]
    if max(erode) > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_odd(2 * erode[0] * size), _odd(2 * erode[1] * size)))
        m = cv2.erode(m, k)
    if max(dilate) > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_odd(2 * dilate[0] * size), _odd(2 * dilate[1] * size)))
        m = cv2.dilate(m, k)
    if m.max() <= 0.5:  # a tiny face eroded away: keep its undeformed-size mask
        m = before
    kx, ky = _odd(max(3.0, p.blur[0] * size)), _odd(max(3.0, p.blur[1] * size))
    m = cv2.GaussianBlur(m, (kx, ky), sigmaX=max(0.3, p.blur_sigma * kx), sigmaY=max(0.3, p.blur_sigma * ky))
    peak = float(m.max())
    if peak > 0:
        m *= np.float32(1.0 / peak)
    return m * hull  # never outside the real face


def _changed(frames: np.ndarray, p: BlendParams) -> np.ndarray:
    """The colour/frequency-changed copy T(x) of the whole clip, one transform for every frame."""
    size = frames.shape[1]
    out = frames
    if p.rgb_shift != (0.0, 0.0, 0.0) or p.hue or p.saturation != 1.0 or p.brightness or p.contrast != 1.0:
        out = apply_colour(out, colour_matrix(1.0, p.contrast, p.saturation, p.hue, offset=np.add(p.rgb_shift, p.brightness * 255.0)))
    if p.frequency == "sharpen" and p.sharpen > 0:
        sigma = max(0.5, size / 112.0)
        out = np.stack([cv2.addWeighted(f, 1.0 + p.sharpen, cv2.GaussianBlur(f, (0, 0), sigma), -p.sharpen, 0) for f in out])
    elif p.frequency == "downscale" and p.downscale > 1.0:
        small = max(2, int(round(size / p.downscale)))
        out = np.stack(
            [cv2.resize(cv2.resize(f, (small, small), interpolation=cv2.INTER_AREA), (size, size), interpolation=cv2.INTER_LINEAR) for f in out]
        )
    return out


def _render(frames, points, p: BlendParams, rng, frame_jitter: float):
    t, size = frames.shape[0], frames.shape[1]
    changed = _changed(frames, p)
    if p.transform_source:
        source = changed
    else:  # the target gets T: equivalently the face gets the opposite change, the surroundings stay real
        source = np.clip(2 * frames.astype(np.int16) - changed, 0, 255).astype(np.uint8)
    ratios = np.full(t, p.ratio, np.float32)
    shifts = np.tile(np.asarray(p.shift, np.float32), (t, 1))
    if frame_jitter > 0:
        ratios = np.clip(ratios * (1.0 + frame_jitter * rng.standard_normal(t)), 0.05, 1.0).astype(np.float32)
        shifts = shifts + np.float32(0.01 * frame_jitter) * rng.standard_normal((t, 2)).astype(np.float32)
    c = (size - 1) / 2.0
    maps = _deform_maps(p, size)
    fakes = np.empty_like(frames)
    masks = np.empty((t, size, size), np.float32)
    cache: dict = {}
    for i in range(t):
        key = points[i].tobytes()
        if key not in cache:  # repeated landmarks (fallbacks, still faces) share one mask
            cache = {key: _blend_mask(points[i], size, p, maps)}
        alpha = cache[key] * ratios[i]
        m = np.array([[p.scale, 0, (1 - p.scale) * c + shifts[i, 0] * size], [0, p.scale, (1 - p.scale) * c + shifts[i, 1] * size]])
        src = cv2.warpAffine(source[i], m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        x = frames[i].astype(np.float32)
        fakes[i] = np.clip(np.rint(x + alpha[..., None] * (src.astype(np.float32) - x)), 0, 255).astype(np.uint8)
        masks[i] = alpha
    return fakes, masks


def _visible(frames, fakes, masks) -> bool:
    """Whether the blend shows: mean |fake - real| over the mask of the frame with the strongest mask. The
    params are shared by all frames, so one frame tells (and costs ~0.1 ms instead of a pass over the clip)."""
    i = int(masks.reshape(len(masks), -1).max(axis=1).argmax())
    inside = (masks[i] > 0.05).astype(np.uint8)
    if not inside.any():
        return True  # nothing to blend into (no face area); strengthening cannot help
    return float(np.mean(cv2.mean(cv2.absdiff(fakes[i], frames[i]), mask=inside)[:3])) >= MIN_VISIBLE


def self_blend_clip(
    frames: np.ndarray,
    landmarks,
    rng: np.random.Generator,
    params: BlendParams | None = None,
    frame_jitter: float = 0.0,
    normalized: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Self-blend a clip: (T, S, S, 3) uint8 RGB crops + (T, 468, 2) landmarks -> (fakes (T, S, S, 3) uint8,
    masks (T, S, S) float32 in [0, ratio]), with fake = mask * source + (1 - mask) * real.

    The same `params` (drawn from `rng` when None) serve every frame; `frame_jitter` > 0 perturbs the ratio
    (multiplicatively, sd = frame_jitter) and the source shift (sd = 1 % of S x frame_jitter) per frame.
    Outside the face hull the fakes equal the input exactly. A DRAWN draw whose visible change would be
    negligible (mean |fake - real| over the mask < MIN_VISIBLE) is redrawn, and after a few tries strengthened
    (an RGB shift at full ratio); explicit `params` are used as given.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2] or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, S, S, 3) uint8, got {frames.shape} {frames.dtype}")
    frames = np.ascontiguousarray(frames)
    points = resolve_landmarks(landmarks, len(frames), frames.shape[1], normalized)
    if params is not None:
        return _render(frames, points, params, rng, frame_jitter)
    for _ in range(_MAX_TRIES):
        params = sample_params(rng)
        fakes, masks = _render(frames, points, params, rng, frame_jitter)
        if _visible(frames, fakes, masks):
            return fakes, masks
    inside = masks > 0.05
    level = float(frames[inside].mean()) if inside.any() else 128.0
    push = 24.0 if level < 128 else -24.0
    params = dataclasses.replace(
        params, transform_source=True, rgb_shift=(push, push, push), ratio=1.0, top_cut=0.0, morph=(0.0, 0.0)
    )
    return _render(frames, points, params, rng, frame_jitter)


def self_blend(
    frame: np.ndarray, landmarks, rng: np.random.Generator, params: BlendParams | None = None, normalized: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One image: (S, S, 3) uint8 + (468, 2) landmarks -> (fake (S, S, 3) uint8, mask (S, S) float32)."""
    lm = None if landmarks is None else np.asarray(landmarks)[None]
    fakes, masks = self_blend_clip(np.asarray(frame)[None], lm, rng, params, normalized=normalized)
    return fakes[0], masks[0]


# -- a look at what it makes ------------------------------------------------------------------------------------
def examples_grid(crops: np.ndarray, landmarks, path, n: int = 8, seed: int = 0) -> Path:
    """Save a PNG with one row per example: real | self-blended | mask | |difference| (x4).

    `crops` (N, S, S, 3) uint8 RGB with `landmarks` (N, 468, 2|3) (or None); n examples spread evenly over N.
    """
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    if landmarks is not None:
        landmarks = np.asarray(landmarks)
        if landmarks.ndim == 2:
            landmarks = landmarks[None]
    rng = np.random.default_rng(seed)
    picks = np.unique(np.linspace(0, len(crops) - 1, min(n, len(crops))).round().astype(int))
    images, titles = [], []
    for i in picks:
        fake, mask = self_blend(crops[i], None if landmarks is None else landmarks[i], rng)
        diff = np.abs(fake.astype(np.int16) - crops[i].astype(np.int16)).max(axis=-1)
        grey = [np.clip(mask * 255.0, 0, 255).astype(np.uint8), np.clip(diff * 4, 0, 255).astype(np.uint8)]
        images += [crops[i], fake] + [cv2.cvtColor(g, cv2.COLOR_GRAY2RGB) for g in grey]
        titles += ["real", f"self-blended r={mask.max():.2f}", "mask", "|diff| x4"]
    from streamdetect.training.plots import image_grid  # matplotlib missing: names the `train` extra

    return image_grid(images, titles, 4, path)
