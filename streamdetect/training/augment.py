"""Clip-consistent augmentation of face-crop sequences.

Every random choice (whether an operation runs and with which strength) is drawn ONCE per clip and applied to
every frame: real degradations (a re-encode, a soft lens, a dim room) affect a whole video, and a temporal model
must not learn from per-frame flicker that only the augmentation introduced. The one deliberate exception is
sensor noise, whose *strength* is per clip but whose pattern is fresh in every frame, as in a real camera
(`noise_per_frame=False` freezes the pattern too).

Augmentation runs AFTER self-blending (`streamdetect.training.sbi`), so it needs no landmarks: frames in,
frames out. Order, as degradations happen in the wild: flip, colour, sharpness matching and erasing (both off by
default), blur, downscale, noise, compression (JPEG then H.264, each independently).

H.264 is the real codec (libx264 through PyAV, encoded and decoded in memory); where this PyAV build has no
libx264 a one-time warning is given and JPEG at a comparable quality is used instead.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

__all__ = [
    "AugmentConfig",
    "augment_clip",
    "colour_matrix",
    "apply_colour",
    "jpeg_roundtrip",
    "h264_roundtrip",
    "h264_available",
    "down_up",
    "log_sharpness",
    "match_sharpness",
]

_RANGES = ("blur_sigma", "downscale_factor", "noise_sigma", "jpeg_quality", "h264_crf", "sharpness_target",
           "erase_area")
_PROBS = ("hflip", "colour", "blur", "downscale", "noise", "jpeg", "h264", "jitter", "sharpness_match", "erase")


@dataclass(frozen=True)
class AugmentConfig:
    """Per-clip probabilities (the bare names: hflip, colour, blur, downscale, noise, jpeg, h264) and the ranges
    their strengths are drawn from (uniformly, once per clip)."""

    enabled: bool = True
    hflip: float = 0.5
    colour: float = 0.5
    brightness: float = 0.2  # factor in [1 - b, 1 + b]
    contrast: float = 0.2  # factor in [1 - c, 1 + c], about the clip's mean grey
    saturation: float = 0.2  # factor in [1 - s, 1 + s]
    hue: float = 0.02  # rotation in [-h, h] of a full turn (0.02 = 7.2 degrees)
    blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # Gaussian sigma, pixels
    downscale: float = 0.3
    downscale_factor: tuple[float, float] = (0.4, 0.9)  # down with INTER_AREA, back up with INTER_LINEAR
    noise: float = 0.2
    noise_sigma: tuple[float, float] = (2.0, 8.0)  # Gaussian noise, uint8 grey levels
    noise_per_frame: bool = True  # fresh noise pattern in each frame (sensor-like); False: one pattern per clip
    jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 95)
    h264: float = 0.3
    h264_crf: tuple[int, int] = (23, 40)
    # Box jitter: the live service crops most frames from tracker-predicted boxes, a few pixels and percent off
    # the detector's; training crops come from fresh detections. A shift of up to `jitter_shift` of the crop and
    # a scale change of up to `jitter_scale` (one draw per clip) teaches the model not to care. Off by default.
    jitter: float = 0.0
    jitter_shift: float = 0.04
    jitter_scale: float = 0.06
    # Sharpness matching: the generators' outputs are sharper than the real footage they are trained against
    # (log variance of the 112 px crop's Laplacian: talking-head fakes 6.6, real videos 5.9 in v3's data; unseen
    # rounds 6-9: 6.2 and 6.1), so sharpness is a cue in training that is gone at test time. With probability
    # `sharpness_match` a clip sharper than a target drawn from `sharpness_target` is downscaled until it is not;
    # the rule is the same for both classes and leaves clips at or below the target alone. Off by default.
    sharpness_match: float = 0.0
    sharpness_target: tuple[float, float] = (5.2, 6.4)
    # Random erasing (Zhong et al. 2020; on faces: Face-Cutout, RFM): with probability `erase` one rectangle of
    # `erase_area` of the crop (aspect 1:2 to 2:1, the same place in every frame) is filled with the clip's mean
    # colour, so that no single region (an eye, a mouth corner, a blend seam) can carry the verdict alone. It is
    # applied before blur, downscaling and compression, which soften its edges as they do the rest. Off by default.
    erase: float = 0.0
    erase_area: tuple[float, float] = (0.05, 0.25)

    def __post_init__(self):
        for name in _RANGES:  # lists from JSON/YAML become tuples, so configs compare and hash
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        for name in _PROBS:
            p = getattr(self, name)
            if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        for name in _RANGES:
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
                raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
            if value[0] > value[1]:
                raise ValueError(f"{name} must have low <= high, got {value!r}")
        for name in ("brightness", "contrast", "saturation"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {v!r}")
        if not (isinstance(self.hue, (int, float)) and 0.0 <= self.hue <= 0.5):
            raise ValueError(f"hue must be in [0, 0.5] (fraction of a turn), got {self.hue!r}")
        if self.blur_sigma[0] < 0 or self.noise_sigma[0] < 0:
            raise ValueError("blur_sigma and noise_sigma must be non-negative")
        if not (0.0 < self.downscale_factor[0] and self.downscale_factor[1] <= 1.0):
            raise ValueError(f"downscale_factor must lie in (0, 1], got {self.downscale_factor!r}")
        if not (0.0 < self.erase_area[0] and self.erase_area[1] <= 1.0):
            raise ValueError(f"erase_area must lie in (0, 1] (a fraction of the crop), got {self.erase_area!r}")
        if not (1 <= self.jpeg_quality[0] and self.jpeg_quality[1] <= 100):
            raise ValueError(f"jpeg_quality must lie in [1, 100], got {self.jpeg_quality!r}")
        if not (0 <= self.h264_crf[0] and self.h264_crf[1] <= 51):
            raise ValueError(f"h264_crf must lie in [0, 51], got {self.h264_crf!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "AugmentConfig":
        """A config from a plain mapping (YAML/JSON); unknown keys are an error, missing keys keep defaults."""
        d = dict(d or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise ValueError(
                f"unknown augmentation key {unknown[0]!r}" + (f" (and {unknown[1:]})" if len(unknown) > 1 else "")
                + f"; valid keys: {', '.join(valid)}"
            )
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# -- colour -----------------------------------------------------------------------------------------------------
_GREY = np.array([0.299, 0.587, 0.114])
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


def colour_matrix(
    brightness: float = 1.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    hue_deg: float = 0.0,
    centre: float = 128.0,
    offset=(0.0, 0.0, 0.0),
) -> np.ndarray:
    """One (3, 4) affine RGB transform = brightness (x * b), contrast ((x - centre) * c + centre), saturation
    (blend with grey), hue (rotation in the YIQ chroma plane), then `offset` added per channel (uint8 units).

    Composing them into one matrix makes the whole colour jitter a single `cv2.transform` pass over the clip,
    and makes it exactly the same per-pixel function in every frame.
    """
    m = np.eye(3)
    b = np.zeros(3)

    def then(a, c=np.zeros(3)):
        nonlocal m, b
        m, b = a @ m, a @ b + c

    then(np.eye(3) * brightness)
    then(np.eye(3) * contrast, np.full(3, (1.0 - contrast) * centre))
    then(saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), _GREY))
    if hue_deg:
        t = math.radians(hue_deg)
        rot = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
        then(_YIQ2RGB @ rot @ _RGB2YIQ)
    b = b + np.asarray(offset, dtype=np.float64)
    return np.concatenate([m, b[:, None]], axis=1).astype(np.float32)


def apply_colour(frames: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (3, 4) colour matrix to uint8 RGB images of any leading shape (..., H, W, 3); saturating."""
    shape = frames.shape
    flat = np.ascontiguousarray(frames).reshape(-1, shape[-2], 3)
    return cv2.transform(flat, matrix).reshape(shape)


# -- compression ------------------------------------------------------------------------------------------------
def jpeg_roundtrip(frames: np.ndarray, quality: int) -> np.ndarray:
    """Encode each RGB frame as JPEG at `quality` and decode it back (same quality for the whole clip)."""
    out = np.empty_like(frames)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for i, f in enumerate(frames):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), params)
        if not ok:  # pragma: no cover - cv2 always has a JPEG encoder
            raise RuntimeError("OpenCV could not JPEG-encode a frame")
        out[i] = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


_H264: dict = {}


def h264_available() -> bool:
    """Whether this PyAV build can encode with libx264 (checked once)."""
    if "ok" not in _H264:
        try:
            import av

            av.codec.Codec("libx264", "w")
            _H264["ok"] = True
        except Exception:  # ImportError, or av's codec-not-found error
            _H264["ok"] = False
    return _H264["ok"]


def _crf_to_jpeg_quality(crf: float) -> int:
    """A rough stand-in: crf 23 ~ quality 85, crf 40 ~ quality 35."""
    return int(np.clip(round(85 - (crf - 23) * 50 / 17), 10, 95))


def _warn_no_h264(reason: str) -> None:
    if not _H264.get("warned"):
        _H264["warned"] = True
        warnings.warn(f"H.264 augmentation falls back to JPEG: {reason}", RuntimeWarning, stacklevel=3)


def h264_roundtrip(frames: np.ndarray, crf: int, fps: int = 25) -> np.ndarray:
    """Encode the T frames as one H.264 stream (libx264, yuv420p, ultrafast, zerolatency, `crf`) in memory and
    decode it back: I-frame then P-frames, so the clip carries real inter-frame compression artefacts.

    Falls back to JPEG (one warning per process) when libx264 is unavailable or the round trip fails.
    """
    if not h264_available():
        _warn_no_h264("libx264 is not available in this PyAV build")
        return jpeg_roundtrip(frames, _crf_to_jpeg_quality(crf))
    try:
        return _h264_roundtrip(frames, int(crf), fps)
    except Exception as exc:  # an odd PyAV/FFmpeg build: keep training going
        _warn_no_h264(f"libx264 round trip failed ({exc})")
        return jpeg_roundtrip(frames, _crf_to_jpeg_quality(crf))


def _h264_roundtrip(frames: np.ndarray, crf: int, fps: int) -> np.ndarray:
    import av

    t, h, w, _ = frames.shape
    hp, wp = h + h % 2, w + w % 2  # 4:2:0 needs even sizes
    if (hp, wp) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height = wp, hp
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, fps)
    enc.framerate = Fraction(fps, 1)
    enc.thread_count = 1  # tiny frames: threads cost more than they save, and training runs many workers
    enc.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency"}
    packets = []
    for i, f in enumerate(frames):
        # OpenCV's RGB<->I420 (BT.601) both ways: consistent, and ~5x faster than swscale for 112 px frames.
        vf = av.VideoFrame.from_ndarray(cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        vf.pts = i
        packets.extend(enc.encode(vf))
    packets.extend(enc.encode(None))
    dec = av.CodecContext.create("h264", "r")
    dec.thread_count = 1
    decoded = []
    for p in packets:
        decoded.extend(dec.decode(p))
    decoded.extend(dec.decode(None))
    if len(decoded) != t:
        raise RuntimeError(f"decoded {len(decoded)} frames of {t}")
    out = np.stack([cv2.cvtColor(d.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420) for d in decoded])
    return np.ascontiguousarray(out[:, :h, :w])


# -- resolution -------------------------------------------------------------------------------------------------
def down_up(frame: np.ndarray, factor: float) -> np.ndarray:
    """Down by `factor` with INTER_AREA and back up with INTER_LINEAR: a face captured at lower resolution."""
    h, w = frame.shape[:2]
    sw, sh = max(1, round(w * factor)), max(1, round(h * factor))
    return cv2.resize(cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)


def log_sharpness(frame: np.ndarray) -> float:
    """log variance of the Laplacian of an RGB frame's luma (higher: sharper)."""
    luma = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return math.log(float(cv2.Laplacian(luma, cv2.CV_32F).var()) + 1e-6)


_MATCH_FACTORS = tuple(np.round(np.arange(0.9, 0.24, -0.05), 2))  # 0.9 ... 0.25


def match_sharpness(frames: np.ndarray, target: float) -> np.ndarray:
    """The clip downscaled by the mildest factor (0.9 ... 0.25) that brings its middle frame's `log_sharpness`
    to `target` or below; the clip itself when it is already there. One factor for every frame."""
    ref = frames[len(frames) // 2]
    if log_sharpness(ref) <= target:
        return frames
    for factor in _MATCH_FACTORS:
        if log_sharpness(down_up(ref, factor)) <= target:
            break
    return np.stack([down_up(f, factor) for f in frames])


def erase_rectangle(frames: np.ndarray, area: float, log_aspect: float, x: float, y: float) -> np.ndarray:
    """The clip with one rectangle of `area` (fraction of the frame; aspect 2**log_aspect) at relative position
    (x, y) in [0, 1) filled with the clip's mean colour, the same in every frame."""
    _, h, w, _ = frames.shape
    aspect = 2.0 ** log_aspect
    rh = min(h, max(1, round(h * math.sqrt(area / aspect))))
    rw = min(w, max(1, round(w * math.sqrt(area * aspect))))
    top, left = int(y * (h - rh + 1)), int(x * (w - rw + 1))
    out = frames.copy()
    out[:, top:top + rh, left:left + rw] = frames.reshape(-1, 3).mean(0).round().astype(np.uint8)
    return out


# -- the clip augmentation --------------------------------------------------------------------------------------
def augment_clip(frames: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None = None) -> np.ndarray:
    """Augment one clip (T, S, S, 3) uint8 RGB with the same random choices for every frame.

    Returns a uint8 array of the same shape (the input itself when `cfg.enabled` is False or nothing was drawn;
    the input is never modified). Deterministic for a given `rng` state.
    """
    cfg = AugmentConfig() if cfg is None else cfg
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if not cfg.enabled or len(frames) == 0:
        return frames

    # Draw everything up front, in a fixed order, whether or not it is used: the stream a seed gives does not
    # depend on which operations fire.
    u = rng.random(7)
    bri = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    con = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    sat = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    hue = rng.uniform(-cfg.hue, cfg.hue) * 360.0
    blur_sigma = rng.uniform(*cfg.blur_sigma)
    factor = rng.uniform(*cfg.downscale_factor)
    noise_sigma = rng.uniform(*cfg.noise_sigma)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    crf = int(rng.integers(cfg.h264_crf[0], cfg.h264_crf[1] + 1))

    # Drawn after everything above and only when enabled, so configs without jitter keep their random stream.
    jitter = (rng.random(), *rng.uniform(-1, 1, 3)) if cfg.jitter > 0 else None
    match = (rng.random(), rng.uniform(*cfg.sharpness_target)) if cfg.sharpness_match > 0 else None
    erase = (rng.random(), rng.uniform(*cfg.erase_area), rng.uniform(-1, 1), rng.random(), rng.random()) \
        if cfg.erase > 0 else None

    out = frames
    t, h, w, _ = frames.shape
    if jitter is not None and jitter[0] < cfg.jitter:
        scale = 1 + jitter[3] * cfg.jitter_scale
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
        m[:, 2] += (jitter[1] * cfg.jitter_shift * w, jitter[2] * cfg.jitter_shift * h)
        out = np.stack([cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                        for f in out])
    if u[0] < cfg.hflip:
        out = np.stack([cv2.flip(f, 1) for f in out])  # ~10x faster than copying a ::-1 view
    if u[1] < cfg.colour:
        centre = float(out.mean()) if con != 1.0 else 128.0  # contrast about the CLIP's mean, not each frame's
        out = apply_colour(out, colour_matrix(bri, con, sat, hue, centre=centre))
    if match is not None and match[0] < cfg.sharpness_match:
        out = match_sharpness(out, match[1])
    if erase is not None and erase[0] < cfg.erase:
        out = erase_rectangle(out, *erase[1:])
    if u[2] < cfg.blur and blur_sigma > 0:
        out = np.stack([cv2.GaussianBlur(f, (0, 0), blur_sigma) for f in out])
    if u[3] < cfg.downscale and factor < 1.0:
        out = np.stack([down_up(f, factor) for f in out])
    if u[4] < cfg.noise and noise_sigma > 0:
        shape = out.shape if cfg.noise_per_frame else out.shape[1:]
        noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_sigma)
        out = np.clip(np.rint(out.astype(np.float32) + noise), 0, 255).astype(np.uint8)
    if u[5] < cfg.jpeg:
        out = jpeg_roundtrip(np.ascontiguousarray(out), quality)
    if u[6] < cfg.h264:
        out = h264_roundtrip(np.ascontiguousarray(out), crf)
    return np.ascontiguousarray(out)
