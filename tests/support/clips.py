"""Real-face footage for tests on a clean clone: the bundled sample clip, and clips made from it with PyAV.

`streamdetect.service.sample_clip()` is one real, unaltered, public-domain face (NASA's portrait of Eileen Collins,
see streamdetect/samples/README.md): 1280x720, 30 fps, 360 frames; the face is out of frame on frames 160-200.
Everything here is derived from it, so no research data is needed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np

from streamdetect.service import sample_clip

FACE_AWAY = range(154, 205)  # sample frames with the face partly (154-159, 201-204) or wholly out of frame (README)


def sample_frames(count: int, start: int = 0) -> Iterator[np.ndarray]:
    """Decoded RGB frames `start`..`start + count - 1` of the bundled sample, one at a time (720p frames are
    2.7 MB each: nothing is kept)."""
    with av.open(str(sample_clip())) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= start + count:
                return
            if i >= start:
                yield frame.to_ndarray(format="rgb24")


@lru_cache(maxsize=8)
def _frame(index: int) -> np.ndarray:
    (rgb,) = sample_frames(1, index)
    rgb.setflags(write=False)
    return rgb


def sample_frame(index: int = 0) -> np.ndarray:
    """One decoded RGB frame of the bundled sample (a writable copy). Frame 0: a medium shot, face ~210 px."""
    return _frame(index).copy()


def encode(path: Path, frames: Iterable[np.ndarray], fps: int = 30) -> Path:
    """Write RGB frames as an H.264 (yuv420p, keyframe every 15 frames) mp4, the way a camera or upload would be."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = None
        for rgb in frames:
            if stream is None:
                stream = out.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
                stream.options = {"g": "15", "preset": "ultrafast"}
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        if stream is None:
            raise ValueError("no frames to encode")
        out.mux(stream.encode())
    return path


def sample_excerpt(path: Path, frames: int = 120, size: tuple[int, int] = (640, 360), start: int = 0,
                   flip: bool = False) -> Path:
    """`frames` frames of the sample from `start`, scaled to `size` and re-encoded (optionally mirrored).
    The default (frames 0-119) has the face in every frame, so a looping source always shows it."""
    def scaled():
        for rgb in sample_frames(frames, start):
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            yield small[:, ::-1] if flip else small

    return encode(path, scaled())


def grid_frame(panels: Iterable[np.ndarray], size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """Up to four frames as the panels of a 2x2 grid (one real face per panel), like a video call's gallery."""
    w, h = size
    canvas = np.zeros((h, w, 3), np.uint8)
    for i, rgb in enumerate(panels):
        y, x = divmod(i, 2)
        canvas[y * h // 2:(y + 1) * h // 2, x * w // 2:(x + 1) * w // 2] = cv2.resize(rgb, (w // 2, h // 2),
                                                                                  interpolation=cv2.INTER_AREA)
    return canvas


def grid_clip(path: Path, faces: int = 4, frames: int = 90, stagger: int = 20) -> Path:
    """A 1280x720 clip of `faces` (2-4) real faces at once: panel i plays the sample from frame i * `stagger`, so
    each face moves on its own path (faces ~105 px tall). All panels stay before the sample's away stretch."""
    assert 2 <= faces <= 4 and (faces - 1) * stagger + frames <= 150
    panels = [sample_frames(frames, i * stagger) for i in range(faces)]  # one decoder per panel: nothing buffered
    return encode(path, (grid_frame(moment) for moment in zip(*panels)))


def phone_clip(path: Path, frames: int = 10, size: tuple[int, int] = (320, 180)) -> Path:
    """The sample as a phone stores a portrait video: pixels turned 90 degrees clockwise, plus a track display
    matrix (a, b, c, d = 0, -1, 1, 0, the matrix a real phone clip with rotation 90 carries) that tells players to
    turn it back. Decoded upright, frame i is the sample's frame i resized to `size`, within codec error."""
    def sideways():
        for rgb in sample_frames(frames):
            yield np.rot90(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), -1)

    encode(path, sideways())
    data = bytearray(Path(path).read_bytes())
    identity = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    at = data.find(identity, data.find(b"tkhd"))  # the track header's matrix (mvhd's comes earlier)
    assert at > 0, "no track matrix found"
    data[at:at + 36] = struct.pack(">9i", 0, -0x10000, 0, 0x10000, 0, 0, 0, size[0] << 16, 0x40000000)
    Path(path).write_bytes(bytes(data))
    return Path(path)
