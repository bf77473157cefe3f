"""A source the application feeds itself: frames from a WebRTC track (aiortc, LiveKit), a game engine, a test.

It implements the pipeline's FrameSource interface (sources.base), as VideoSource does, but has no decode thread: `push(rgb)` hands over an (H, W, 3) uint8 RGB frame. The default
policy is the live one (one slot, drop oldest), so pushing never blocks the caller's event loop and the pipeline
always works on the newest frame. `end()` says the track is over (the stream's faces are then closed).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

from streamdetect.sources.base import END, BufferedSource, DropPolicy, Frame, FrameBuffer, SourceState, StatusEvent


class PushSource(BufferedSource):
    def __init__(self, name: str, buffer_size: int = 1, policy: DropPolicy = DropPolicy.DROP_OLDEST):
        self.name = name
        self.state = SourceState.CONNECTING  # until the first frame
        self.decoded = 0
        self.corrupt_packets = 0  # nothing is decoded here; kept for the pipeline's status messages
        self.last_error = ""
        self._size, self._policy = buffer_size, policy
        self.buffer = FrameBuffer(buffer_size, policy)
        self.on_status: Callable[[StatusEvent], None] = lambda event: None
        self._stop = threading.Event()

    def start(self) -> PushSource:
        return self  # nothing to start: frames arrive through push()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()  # releases a push() waiting on a full buffer with the "wait" policy

    def push(self, rgb: np.ndarray, pts: float | None = None) -> bool:
        """Hand over one frame (H, W, 3) uint8 RGB; pts: the track's timestamp in seconds. False once stopped."""
        if self.state in (SourceState.ENDED, SourceState.OFFLINE) or self._stop.is_set():
            return False
        if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
            raise ValueError(f"push() takes an (H, W, 3) uint8 RGB array, got {getattr(rgb, 'shape', type(rgb))} "
                             f"{getattr(rgb, 'dtype', '')}")
        if self.state is not SourceState.ONLINE:
            self._set_state(SourceState.ONLINE)
        frame = Frame(self.name, self.decoded, pts, time.monotonic(), np.ascontiguousarray(rgb))
        self.decoded += 1
        return self.buffer.put(frame, self._stop)

    def end(self, error: str = "") -> None:
        """The track is over (or failed, with `error`): the pipeline finishes this stream after the last frame."""
        if self.state in (SourceState.ENDED, SourceState.OFFLINE):
            return
        self._set_state(SourceState.OFFLINE if error else SourceState.ENDED, error)
        if self._policy is DropPolicy.DROP_OLDEST and len(self.buffer) >= self._size:
            self.buffer.get_nowait()  # make room: the buffer never drops END itself, and end() must not block
            self.buffer.dropped += 1
        self.buffer.put(END, self._stop)

    def _set_state(self, state: SourceState, detail: str = "") -> None:
        self.state, self.last_error = state, detail
        self.on_status(StatusEvent(self.name, state, detail))
