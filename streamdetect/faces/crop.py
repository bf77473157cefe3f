"""The one face-crop function, shared by serving and training (peers lose all accuracy when the two differ).

A square of `margin` x the detector box's longer side is cut out around the box centre (context around the face
carries blending seams) and resized to `size`. Two styles, named in the model card (`ModelConfig.crop`) so a model
is always served the crop it was trained on:
  * "box":     axis-aligned square, bilinear resize: the crop of the simple frame-level recipe that scored 0.88
               cross-dataset (issue 9), and of the default model since v2.
  * "aligned": rotated about the box centre so the eyes are level (from the detector's eye keypoints), area
               resize: the crop of models made before card field `crop` existed.
  * "mouth":   axis-aligned square of MOUTH_SIDE x the box's longer side around the detector's mouth keypoint
               (nose tip to chin): lip-sync generators regenerate only this region, which a whole-face crop
               shows at a quarter of the pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from streamdetect.faces.types import Detection

CROP_MARGIN = 1.3
CROP_STYLES = ("box", "aligned", "mouth")
MOUTH_SIDE = 0.75  # x the box side: nose to below the chin, cheek to cheek (the seam of a regenerated lower face)


def eye_angle(detection: Detection) -> float:
    """Roll of the face in degrees (0 = eyes level); 0 when the detector gave no keypoints."""
    kps = detection.keypoints
    if kps is None or len(kps) < 2:
        return 0.0
    (rx, ry), (lx, ly) = kps[0], kps[1]  # subject's right eye is on the image's left for a frontal face
    return math.degrees(math.atan2(ly - ry, lx - rx))


def check_style(style: str) -> str:
    if style not in CROP_STYLES:
        raise ValueError(f"unknown crop style {style!r}; choose one of {', '.join(CROP_STYLES)}")
    return style


def square_transform(detection: Detection, margin: float = CROP_MARGIN,
                     style: str = "aligned") -> tuple[np.ndarray, int]:
    """2x3 affine from frame pixels into the square of side_px pixels that align_crop cuts out."""
    style = check_style(style)
    cx, cy = detection.box.center
    if style == "mouth":
        kps = detection.keypoints  # BlazeFace keypoint 3 is the mouth centre; else 3/4 down a frontal box
        cx, cy = (float(kps[3][0]), float(kps[3][1])) if kps is not None and len(kps) > 3 \
            else (cx, cy + 0.25 * detection.box.height)
        margin = MOUTH_SIDE
    side_px = max(2, int(round(max(detection.box.width, detection.box.height) * margin)))
    # Rotate about the face centre (eye-levelled style only), then move that centre to the middle of the square.
    angle = eye_angle(detection) if style == "aligned" else 0.0
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[:, 2] += (side_px / 2 - cx, side_px / 2 - cy)
    return m, side_px


def align_crop(rgb: np.ndarray, detection: Detection, size: int = 112, margin: float = CROP_MARGIN,
               style: str = "aligned") -> np.ndarray:
    """A (size, size, 3) uint8 crop of one face in the given style; outside-the-frame pixels are black."""
    m, side_px = square_transform(detection, margin, style)
    square = cv2.warpAffine(rgb, m, (side_px, side_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    interp = cv2.INTER_AREA if side_px > size and style == "aligned" else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


def points_to_crop(points_xy: np.ndarray, detection: Detection, size: int = 112,
                   margin: float = CROP_MARGIN, style: str = "aligned") -> np.ndarray:
    """Frame-pixel points (K, 2+) -> (K, 2) float32 pixel coordinates in `align_crop(rgb, detection, size, margin)`.

    Same geometry as align_crop: rotation about the box centre, a shift into the side_px square, then the resize,
    whose pixel centres satisfy x' = (x + 0.5) * size / side_px - 0.5 (OpenCV's convention for both modes)."""
    m, side_px = square_transform(detection, margin, style)
    square = np.asarray(points_xy, dtype=np.float64)[:, :2] @ m[:, :2].T + m[:, 2]
    return ((square + 0.5) * (size / side_px) - 0.5).astype(np.float32)


def landmarks_in_crop(points: np.ndarray, detection: Detection, margin: float = CROP_MARGIN,
                      style: str = "aligned") -> np.ndarray:
    """Face-mesh landmarks (K, 3) in frame pixels -> (K, 3) in crop units (0..1 across the crop, z likewise),
    whatever the crop size: what prepare stores and what the service feeds expression features."""
    m, side_px = square_transform(detection, margin, style)
    points = np.asarray(points, dtype=np.float64)
    xy = points[:, :2] @ m[:, :2].T + m[:, 2]
    return (np.concatenate([xy, points[:, 2:3]], axis=1) / side_px).astype(np.float32)
