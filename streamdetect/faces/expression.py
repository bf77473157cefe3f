"""Expression cues from face-mesh landmarks: mouth, eyes, brows, head pose, and how they move.

The paper's second objective is to catch manipulated expressions over time (reenactment moves a mouth the
rest of the face does not follow; talking-head generators blink too little or too regularly). These 11
geometric measures, and their frame-to-frame change, are fed beside the CNN features into the LSTM when a
model is trained with `expression_size = EXPRESSION_SIZE`.

Every measure is a ratio of landmark distances, so it does not depend on the face's size in pixels, and the
same function serves training (landmarks in crop coordinates) and the live service.
"""

from __future__ import annotations

import numpy as np

from streamdetect.faces.landmarks import CHIN, MOUTH, NOSE_TIP
from streamdetect.faces.landmarks import LEFT_EYE as L_EYE
from streamdetect.faces.landmarks import RIGHT_EYE as R_EYE

# Canonical MediaPipe face-mesh indices (subject's right/left); eyes in eye-aspect-ratio order p1..p6.
R_BROW_MID, L_BROW_MID = 105, 334
LIP_UP, LIP_DOWN, LIP_R, LIP_L = MOUTH[:4]  # inner lips
MOUTH_R, MOUTH_L = MOUTH[6:8]  # mouth corners

STATIC_NAMES = ("mouth_open", "mouth_width", "right_eye_open", "left_eye_open", "right_brow", "left_brow",
                "smile", "yaw", "pitch", "roll", "jaw")
EXPRESSION_SIZE = 2 * len(STATIC_NAMES)  # the measures and their change since the previous frame


def _d(p: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(p[..., i, :2] - p[..., j, :2], axis=-1)


def _eye_open(p: np.ndarray, e: tuple[int, ...]) -> np.ndarray:
    return (_d(p, e[1], e[5]) + _d(p, e[2], e[4])) / (2 * _d(p, e[0], e[3]) + 1e-6)


def static_features(landmarks: np.ndarray) -> np.ndarray:
    """(..., 468, 2|3) landmarks -> (..., 11) measures; NaN where the landmarks are NaN (face not found)."""
    p = np.asarray(landmarks, np.float32)
    xy = p[..., :2]
    r_eye, l_eye = xy[..., R_EYE, :].mean(-2), xy[..., L_EYE, :].mean(-2)
    eye_mid = (r_eye + l_eye) / 2
    iod = np.linalg.norm(l_eye - r_eye, axis=-1) + 1e-6  # inter-ocular distance: the unit of length
    lip_mid = (xy[..., LIP_UP, :] + xy[..., LIP_DOWN, :]) / 2
    corners_mid = (xy[..., MOUTH_R, :] + xy[..., MOUTH_L, :]) / 2
    eye_to_mouth = np.linalg.norm(lip_mid - eye_mid, axis=-1) + 1e-6
    eye_dir = (l_eye - r_eye) / iod[..., None]
    # Head pose proxies in the face's own frame (x along the eye line, y perpendicular, pointing down).
    nose = xy[..., NOSE_TIP, :] - eye_mid
    nose_x = nose[..., 0] * eye_dir[..., 0] + nose[..., 1] * eye_dir[..., 1]
    nose_y = -nose[..., 0] * eye_dir[..., 1] + nose[..., 1] * eye_dir[..., 0]
    feats = [
        _d(p, LIP_UP, LIP_DOWN) / (_d(p, LIP_R, LIP_L) + 1e-6),
        _d(p, MOUTH_R, MOUTH_L) / iod,
        _eye_open(p, R_EYE),
        _eye_open(p, L_EYE),
        np.linalg.norm(xy[..., R_BROW_MID, :] - r_eye, axis=-1) / iod,
        np.linalg.norm(xy[..., L_BROW_MID, :] - l_eye, axis=-1) / iod,
        (lip_mid[..., 1] - corners_mid[..., 1]) / iod,  # corners above the lip centre: a smile
        nose_x / iod,
        nose_y / eye_to_mouth,
        np.arctan2(eye_dir[..., 1], eye_dir[..., 0]),
        _d(p, NOSE_TIP, CHIN) / iod,
    ]
    return np.stack(feats, axis=-1).astype(np.float32)


def clip_features(landmarks: np.ndarray) -> np.ndarray:
    """(T, 468, 2|3) landmarks of consecutive frames -> (T, EXPRESSION_SIZE) features for training, exactly
    what `ExpressionTracker` gives frame by frame: frames without landmarks (NaN) repeat the last known
    measures (motion 0); before the first known frame everything is 0."""
    tracker = ExpressionTracker()
    s = static_features(landmarks)
    return np.stack([tracker.update(0, None if np.isnan(f).any() else f, static=f) for f in s])


class ExpressionTracker:
    """The live-service side of `clip_features`: one face per key, fed one frame at a time."""

    def __init__(self):
        self._last: dict = {}

    def update(self, key, landmarks: np.ndarray | None, static: np.ndarray | None = None) -> np.ndarray:
        """(468, 2|3) landmarks of this frame (None when not found) -> (EXPRESSION_SIZE,) features.
        `static`: the frame's measures when already computed (clip_features computes a whole clip at once)."""
        prev = self._last.get(key)
        s = None if landmarks is None else (static if static is not None else static_features(landmarks))
        if s is None or np.isnan(s).any():
            if prev is None:  # nothing known yet: neutral features, and the first real frame has no motion
                return np.zeros(EXPRESSION_SIZE, np.float32)
            s = prev
        motion = s - prev if prev is not None else np.zeros_like(s)
        self._last[key] = s
        return np.concatenate([s, motion]).astype(np.float32)

    def forget(self, key) -> None:
        self._last.pop(key, None)


_SWAP = np.arange(len(STATIC_NAMES))
_SWAP[[2, 3, 4, 5]] = [3, 2, 5, 4]  # right <-> left eye and brow
_SIGN = np.ones(len(STATIC_NAMES), np.float32)
_SIGN[[STATIC_NAMES.index("yaw"), STATIC_NAMES.index("roll")]] = -1


def mirror(features: np.ndarray) -> np.ndarray:
    """Features of the horizontally flipped face (training's flip augmentation must flip these too)."""
    half = len(STATIC_NAMES)
    f = np.asarray(features)
    return np.concatenate([f[..., :half][..., _SWAP] * _SIGN, f[..., half:][..., _SWAP] * _SIGN], axis=-1)
