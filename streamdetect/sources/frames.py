"""Decoded PyAV frame -> the RGB array a viewer would see.

Phone videos are stored sideways with a display-matrix rotation that players apply; without it a portrait selfie
reaches the face detector lying on its side (often no face found, or a crop the model never trained on). One
function for the live/file source and for `prepare`, so training and serving see the same upright pixels.
"""

from __future__ import annotations

import numpy as np


def upright_rgb(frame) -> np.ndarray:
    """RGB uint8 array of an av.VideoFrame, turned by its display rotation (multiples of 90 degrees)."""
    rgb = frame.to_ndarray(format="rgb24")
    # PyAV reports the counter-clockwise angle of the display matrix; np.rot90 turns counter-clockwise too.
    quarter_turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb
