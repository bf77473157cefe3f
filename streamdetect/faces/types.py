"""Face detections and tracks: small frozen values passed between detector, tracker and cropper."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in frame pixels (x0, y0) top-left, (x1, y1) bottom-right."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0

    def as_list(self) -> list[float]:
        return [round(float(v), 1) for v in (self.x0, self.y0, self.x1, self.y1)]


@dataclass(frozen=True)
class Detection:
    """One face found by the detector. keypoints: (6, 2) pixel coordinates in BlazeFace order:
    right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion (subject's right/left)."""

    box: Box
    score: float
    keypoints: np.ndarray | None = None

    def __eq__(self, other):  # numpy arrays make the dataclass default __eq__ ambiguous
        return self is other

    __hash__ = object.__hash__


@dataclass(frozen=True)
class Track:
    """A face followed over time. `detection` is the latest (possibly predicted) observation."""

    track_id: int
    detection: Detection
    age: int  # frames since the track started
    hits: int  # frames with a real detection
    missed: int  # consecutive frames without a detection (0 when seen in this frame)

    @property
    def box(self) -> Box:
        return self.detection.box
