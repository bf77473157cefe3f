"""Boxes, track ids and confidence drawn on frames: one drawing for scan's video and the live previews."""

from __future__ import annotations

import cv2
import numpy as np

VERDICT_COLOURS = {"unknown": (160, 160, 160), "clear": (40, 190, 60), "suspicious": (240, 170, 0), "alert": (230, 40, 40)}


def draw_faces(img: np.ndarray, faces, scale: float = 1.0) -> np.ndarray:
    """Draw in place on an RGB image; face boxes are in source pixels and scaled by `scale`."""
    thick = max(1, round(2 * scale))
    for f in faces:
        x0, y0, x1, y1 = (int(v * scale) for v in f.box)
        colour = VERDICT_COLOURS[f.verdict]
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, thick)
        label = f"#{f.track} " + (f"{f.confidence:.2f} {f.verdict}" if f.confidence is not None else "...")
        cv2.putText(img, label, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return img
