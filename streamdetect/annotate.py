"""Boxes, track ids and confidence drawn on frames: one drawing for scan's video and the live previews.

Sizes follow the image drawn on (its shorter side; 720 px is the reference): a 1080p video gets 1.5x the
lines and text of a 720p one, a 480 px preview thinner ones, never below a legible minimum. Each label sits on a
box filled with the verdict's colour, in black or white text, whichever contrasts more with it.
"""

from __future__ import annotations

import cv2
import numpy as np

VERDICT_COLOURS = {"unknown": (160, 160, 160), "clear": (40, 190, 60), "suspicious": (240, 170, 0), "alert": (230, 40, 40)}
FONT = cv2.FONT_HERSHEY_SIMPLEX
REFERENCE_SIDE = 720  # the shorter side at which the sizes below apply as given
FONT_SCALE, MIN_FONT_SCALE = 0.8, 0.4
LINE_WIDTH = 3


def draw_faces(img: np.ndarray, faces, scale: float = 1.0) -> np.ndarray:
    """Draw in place on an RGB image; face boxes are in source pixels and scaled by `scale`."""
    unit = min(img.shape[:2]) / REFERENCE_SIDE
    line = max(1, round(LINE_WIDTH * unit))
    font_scale = max(MIN_FONT_SCALE, FONT_SCALE * unit)
    text_thick = max(1, round(2 * unit))
    for f in faces:
        x0, y0, x1, y1 = (int(v * scale) for v in f.box)
        colour = VERDICT_COLOURS[f.verdict]
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, line)
        label = f"#{f.track} " + (f"{f.confidence:.2f} {f.verdict}" if f.confidence is not None else "...")
        _label(img, label, x0 - line // 2, y0 - (line + 1) // 2, colour, font_scale, text_thick)
    return img


def _label(img: np.ndarray, text: str, x: int, y_top: int, colour, font_scale: float, thick: int) -> None:
    """Text on a filled box whose bottom-left corner is (x, y_top) (above the face box), moved inside the image."""
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, thick)
    pad = max(2, round(th * 0.3))
    w, h = tw + 2 * pad, th + base + 2 * pad
    height, width = img.shape[:2]
    x = min(max(0, x), max(0, width - w))
    y = y_top - h if y_top - h >= 0 else max(0, y_top)  # no room above the box: just inside its top edge
    y = min(y, max(0, height - h))
    cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), colour, cv2.FILLED)
    cv2.putText(img, text, (x + pad, y + pad + th), FONT, font_scale, _text_colour(colour), thick, cv2.LINE_AA)


def _text_colour(rgb) -> tuple[int, int, int]:
    """Black or white, whichever has the higher WCAG contrast ratio against the background colour."""
    lin = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return (0, 0, 0) if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else (255, 255, 255)
