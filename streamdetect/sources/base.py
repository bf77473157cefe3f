"""Frames, source states, the named drop policy (roboflow's buffer strategies, reduced to the two we use), and the
interface every source offers the pipeline (FrameSource)."""

from __future__ import annotations

import enum
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Frame:
    stream: str
    index: int  # decoded frame counter since the source started (monotonic across reconnects)
    pts: float | None  # the stream's own timestamp in seconds (None when the container has none)
    captured_at: float  # time.monotonic() when decoded: the start of capture->push latency
    rgb: np.ndarray  # (H, W, 3) uint8


class SourceState(str, enum.Enum):
    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"  # gave up (a file that cannot be read, or retries exhausted)
    ENDED = "ended"  # a file finished


class DropPolicy(str, enum.Enum):
    """What a full buffer does with a new frame."""

    WAIT = "wait"  # files: the decoder waits, every frame is processed
    DROP_OLDEST = "drop_oldest"  # live: the oldest buffered frame is discarded, latency stays bounded


@dataclass(frozen=True)
class StatusEvent:
    stream: str
    state: SourceState
    detail: str = ""


END = object()  # placed in the buffer after a finite source's last frame


class FrameBuffer:
    """A bounded hand-off between one decode thread and the processing thread, with a named drop policy."""

    def __init__(self, size: int, policy: DropPolicy, ready: threading.Event | None = None):
        self._q: queue.Queue = queue.Queue(maxsize=size)
        self.policy = policy
        self.dropped = 0
        self.ready = ready  # shared by all sources of a pipeline: wakes its processing thread

    def put(self, item, stop: threading.Event) -> bool:
        """Add a frame (or END); False if `stop` was set while waiting. DROP_OLDEST never waits."""
        if self.policy is DropPolicy.DROP_OLDEST and item is not END:
            while True:
                try:
                    self._q.put_nowait(item)
                    break
                except queue.Full:
                    try:
                        self._q.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        else:
            while True:
                if stop.is_set():
                    return False
                try:
                    self._q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
        if self.ready is not None:
            self.ready.set()
        return True

    def get_nowait(self):
        try:
            return self._q.get_nowait()
        except queue.Empty:
            return None

    def __len__(self) -> int:
        return self._q.qsize()


@runtime_checkable
class FrameSource(Protocol):
    """What the pipeline reads: VideoSource (a PyAV decode thread), PushSource (frames the application hands over),
    or your own. The pipeline calls attach() once, then start(); read() is polled from its processing thread."""

    @property
    def name(self) -> str: ...

    state: SourceState
    decoded: int  # frames produced since start (monotonic across reconnects)
    corrupt_packets: int  # packets that could not be decoded (0 for sources that decode nothing)
    last_error: str  # why the source is reconnecting or offline; '' when online

    @property
    def dropped(self) -> int:
        """Frames discarded by the drop policy (the newest frame won)."""

    def attach(self, ready: threading.Event, on_status: Callable[[StatusEvent], None]) -> None:
        """Wake `ready` whenever a frame or END is buffered; report every state change to `on_status`."""

    def start(self) -> FrameSource: ...

    def stop(self, timeout: float | None = None) -> None: ...

    def read(self):
        """The next Frame, END after the last one, or None if nothing is ready. Never blocks."""


class BufferedSource:
    """The FrameSource plumbing VideoSource and PushSource share: a FrameBuffer, attach, read and dropped."""

    buffer: FrameBuffer
    on_status: Callable[[StatusEvent], None]

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    def attach(self, ready: threading.Event, on_status: Callable[[StatusEvent], None]) -> None:
        """Called by the pipeline that reads this source (before start): wake its processing thread on each frame
        and report states to it."""
        self.buffer.ready = ready
        self.on_status = on_status

    def read(self):
        """The next buffered Frame, END after a finite source's last frame, or None if nothing is ready."""
        return self.buffer.get_nowait()
