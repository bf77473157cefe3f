"""Evidence clips: a per-stream ring of recent processed frames, and H.264 MP4s cut from it.

The ring holds the frames the model judged, annotated with boxes and confidence and downscaled to the clip
width, as JPEGs (a 640 px frame is ~40 kB as JPEG, ~700 kB raw: 5 s of 30 fps stays under 10 MB a stream).
Frames are taken after processing, not as encoded packets, so a clip shows exactly what the verdict saw.
A clip is written to NAME.part and renamed when complete: a clip file that exists is whole.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from streamdetect.annotate import draw_faces


@dataclass(frozen=True)
class ClipFrame:
    ts: float  # wall-clock seconds, the same clock as message timestamps
    jpeg: bytes


class FrameRing:
    """Recent frames of every stream, appended by the processing thread, read by the recorder's thread."""

    def __init__(self, seconds: float, width: int, fps: float = 15.0):
        self.seconds, self.width, self.interval = seconds, width, 1.0 / fps
        self._frames: dict[str, deque[ClipFrame]] = {}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, stream: str, rgb: np.ndarray, faces, ts: float | None = None) -> None:
        ts = time.time() if ts is None else ts
        if ts - self._last.get(stream, -1e9) < self.interval * 0.9:  # at most `fps` frames kept: the rest cost nothing
            return
        self._last[stream] = ts
        h, w = rgb.shape[:2]
        scale = min(1.0, self.width / w)
        size = (round(w * scale) // 2 * 2, round(h * scale) // 2 * 2)  # H.264 wants even sizes
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        draw_faces(small, faces, small.shape[1] / w)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            return
        with self._lock:
            ring = self._frames.setdefault(stream, deque())
            ring.append(ClipFrame(ts, data.tobytes()))
            while ring and ring[0].ts < ts - self.seconds:
                ring.popleft()

    def since(self, stream: str, after: float, until: float) -> list[ClipFrame]:
        """Frames with after < ts <= until, oldest first."""
        with self._lock:
            return [f for f in self._frames.get(stream, ()) if after < f.ts <= until]


def write_clip(frames: list[ClipFrame], path: Path) -> int:
    """Encode frames to an H.264 MP4; returns its size in bytes.
    Raises OSError (disk full, folder gone) or av errors; nothing is left at `path` unless it succeeded."""
    import av

    if not frames:
        raise ValueError("no frames to write")
    first = cv2.imdecode(np.frombuffer(frames[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    height, width = first.shape[:2]
    part = path.with_name(path.name + ".part")
    try:
        with av.open(str(part), "w", format="mp4") as out:
            # Constant frame rate at the rate the frames were processed, so the clip plays in real time.
            span = frames[-1].ts - frames[0].ts
            fps = Fraction((len(frames) - 1) / span).limit_denominator(1000) if span > 0 else Fraction(1)
            stream = out.add_stream("libx264", rate=max(Fraction(1), min(fps, Fraction(60))))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "26"}
            for f in frames:
                bgr = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
                if bgr.shape[:2] != (height, width):  # the stream changed resolution mid-clip
                    bgr = cv2.resize(bgr, (width, height))
                for packet in stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        with open(part, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path.stat().st_size
