"""Quality flags: frames a verdict should not rest on (Dataspike's NoFace/TooBlurry/TooDark, our thresholds)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamdetect.faces.types import Detection


@dataclass(frozen=True)
class QualityThresholds:
    min_face_px: int = 40  # face box height in frame pixels
    min_brightness: float = 30.0  # mean luma of the crop, 0..255 (1st percentile of our real clips: 40)
    min_sharpness: float = 15.0  # variance of the Laplacian of the crop luma (1st percentile of real clips: 80)


def quality_flags(crop: np.ndarray, detection: Detection, limits: QualityThresholds = QualityThresholds()) -> tuple[str, ...]:
    """Names of every problem with this face; empty when the face is usable evidence."""
    flags = []
    if detection.box.height < limits.min_face_px:
        flags.append("too_small")
    luma = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    if float(luma.mean()) < limits.min_brightness:
        flags.append("too_dark")
    elif float(cv2.Laplacian(luma, cv2.CV_32F).var()) < limits.min_sharpness:
        flags.append("too_blurry")  # a dark crop has low contrast anyway: report the cause, not both
    return tuple(flags)
