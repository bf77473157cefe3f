"""Motion cues: how the face mesh moves over a window (the paper's expression objective, texture-free).

Talking-head generators synthesise motion from audio or a driving video: lips, jaw and eyes move with other
velocity, acceleration and jerk statistics than a filmed person, blinks come too rarely or too regularly, and
the head pose jitters or floats. None of this depends on texture, so it is a second, independent view next
to the CNN (BioLip, a ~100k-parameter MLP on lip-landmark dynamics, reports video AUC 0.90 on AVLips).

`window_features` turns the per-frame measures of `streamdetect.faces.expression.static_features` (the same
ratio measures training and the service already compute) plus raw mouth/jaw landmark jitter into one
fixed-size vector per window; `MotionHead` is a standardised logistic model over it.
"""

from __future__ import annotations

import numpy as np

from streamdetect.faces.expression import STATIC_NAMES, static_features
from streamdetect.faces.landmarks import CHIN, MOUTH
from streamdetect.faces.landmarks import LEFT_EYE as L_EYE
from streamdetect.faces.landmarks import RIGHT_EYE as R_EYE

MOTION_WINDOW = 40  # frames: 1.3-1.7 s, long enough to hold a blink or a phrase
_EYE = (STATIC_NAMES.index("right_eye_open"), STATIC_NAMES.index("left_eye_open"))
_POSE = tuple(STATIC_NAMES.index(n) for n in ("yaw", "pitch", "roll"))
_JITTER_POINTS = np.array(sorted(set(MOUTH) | {CHIN}))
FEATURE_NAMES = tuple(
    [f"{n}_{s}" for n in STATIC_NAMES for s in ("std", "vel", "acc", "jerk")]
    + ["blink_rate", "eye_min", "eye_asym", "pose_jitter", "mouth_jitter", "mouth_eye_corr"])


def _fill(s: np.ndarray) -> np.ndarray:
    """NaN frames (no landmarks) repeat the previous frame (the first known one at the start)."""
    s = s.copy()
    ok = ~np.isnan(s).any(-1)
    if not ok.any():
        return np.zeros_like(s)
    first = int(np.argmax(ok))
    s[:first] = s[first]
    for t in range(first + 1, len(s)):
        if not ok[t]:
            s[t] = s[t - 1]
    return s


def window_features(landmarks: np.ndarray) -> np.ndarray:
    """(T, 468, 2|3) landmarks of consecutive frames (crop units or pixels; NaN where not found) ->
    (len(FEATURE_NAMES),) float32 motion statistics of the window."""
    lm = np.asarray(landmarks, np.float32)
    s = _fill(static_features(lm))
    v = np.diff(s, axis=0)
    a = np.diff(v, axis=0)
    j = np.diff(a, axis=0)
    per_measure = np.stack([s.std(0), np.abs(v).mean(0), np.abs(a).mean(0), np.abs(j).mean(0)], -1).reshape(-1)
    eye = s[:, _EYE].mean(1)
    base = np.median(eye) + 1e-6
    closed = eye < 0.6 * base
    blinks = np.count_nonzero(closed[1:] & ~closed[:-1]) / max(1, len(eye))
    eye_asym = np.abs(s[:, _EYE[0]] - s[:, _EYE[1]]).mean() / base
    pose_jitter = np.abs(a[:, _POSE]).mean() if len(a) else 0.0
    # Mouth and chin points: second difference after removing the whole face's motion (eye centre), in
    # inter-ocular units: generated mouths shimmer or glide differently from filmed ones.
    xy = lm[..., :2]
    eyes = (xy[:, R_EYE].mean(1) + xy[:, L_EYE].mean(1)) / 2
    iod = np.linalg.norm(xy[:, L_EYE].mean(1) - xy[:, R_EYE].mean(1), axis=-1)
    rel = (xy[:, _JITTER_POINTS] - eyes[:, None]) / (np.nanmedian(iod) + 1e-6)
    rel = np.nan_to_num(rel)
    mouth_jitter = np.abs(np.diff(rel, 2, axis=0)).mean() if len(rel) > 2 else 0.0
    mo, ey = v[:, STATIC_NAMES.index("mouth_open")], v[:, _EYE].mean(1)
    corr = float(np.corrcoef(mo, ey)[0, 1]) if len(v) > 2 and mo.std() > 1e-9 and ey.std() > 1e-9 else 0.0
    extra = [blinks, float(closed.mean()), eye_asym, pose_jitter, mouth_jitter, corr]
    return np.nan_to_num(np.concatenate([per_measure, extra]).astype(np.float32))


def clip_windows(landmarks: np.ndarray, window: int = MOTION_WINDOW, stride: int = 20) -> np.ndarray:
    """(W, F) features of the windows of a clip (one window, the whole clip, when it is shorter)."""
    n = len(landmarks)
    starts = range(0, max(1, n - window + 1), stride)
    return np.stack([window_features(landmarks[s:s + window]) for s in starts])


class MotionHead:
    """Standardised logistic regression on window features, fitted with plain gradient descent (numpy)."""

    def __init__(self, mean=None, std=None, weight=None, bias: float = 0.0):
        self.mean, self.std, self.weight, self.bias = mean, std, weight, float(bias)

    def fit(self, x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 2000, lr: float = 0.1,
            sample_weight: np.ndarray | None = None) -> "MotionHead":
        x = np.log1p(np.abs(x)) * np.sign(x)  # heavy-tailed magnitudes -> comparable scales
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        z = (x - self.mean) / self.std
        w, b = np.zeros(z.shape[1]), 0.0
        sw = np.ones(len(y)) if sample_weight is None else sample_weight / sample_weight.mean()
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(z @ w + b)))
            g = (p - y) * sw
            w -= lr * (z.T @ g / len(y) + l2 * w)
            b -= lr * g.mean()
        self.weight, self.bias = w, b
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = np.log1p(np.abs(x)) * np.sign(x)
        return ((x - self.mean) / self.std) @ self.weight + self.bias
