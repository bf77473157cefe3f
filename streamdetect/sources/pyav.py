"""One PyAV decode thread per source, with reconnect (exponential backoff + jitter) for live streams."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from streamdetect.errors import SourceOpenError
from streamdetect.retry import Backoff  # noqa: F401  (also importable from here, where it was defined)
from streamdetect.sources.base import END, BufferedSource, DropPolicy, Frame, FrameBuffer, SourceState, StatusEvent
from streamdetect.sources.frames import upright_rgb
from streamdetect.sources.spec import SourceSpec, redact

log = logging.getLogger(__name__)


class VideoSource(BufferedSource):
    """A FrameSource (sources.base) decoding one URL or file on its own thread."""

    def __init__(self, spec: SourceSpec, on_status: Callable[[StatusEvent], None] = lambda e: None,
                 buffer_size: int | None = None, policy: DropPolicy | None = None, realtime: bool = False,
                 backoff: Backoff = Backoff(), open_timeout_s: float = 5.0, read_timeout_s: float = 5.0,
                 ready: threading.Event | None = None, loop: bool = False, error: str = ""):
        self.spec = spec
        self.error = error  # set for a source that could not even be parsed: it reports itself offline
        self.policy = policy or (DropPolicy.DROP_OLDEST if spec.live else DropPolicy.WAIT)
        # Live: one slot, so the frame processed next is always the newest (latency = one frame of work, not three).
        self.buffer = FrameBuffer(buffer_size or (1 if self.policy is DropPolicy.DROP_OLDEST else 8), self.policy, ready)
        self.realtime, self.backoff, self.loop = realtime, backoff, loop
        self.timeouts = (open_timeout_s, read_timeout_s)
        self.on_status = on_status
        self.state = SourceState.CONNECTING
        self.decoded = self.corrupt_packets = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"decode:{spec.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> VideoSource:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # -- decode thread ---------------------------------------------------------------------------------
    def _set_state(self, state: SourceState, detail: str = "") -> None:
        detail = redact(detail, self.spec.url)  # never broadcast a camera's password
        self.state = state
        self.last_error = detail  # cleared when the source is back online
        self.on_status(StatusEvent(self.name, state, detail))

    @classmethod
    def failed(cls, name: str, url: str, error: str, **kwargs) -> VideoSource:
        """A source that could not be set up (bad URL, missing file): it only reports OFFLINE with the reason,
        so a service with many streams keeps serving the others."""
        return cls(SourceSpec(name, url, url), error=error, **kwargs)

    def _run(self) -> None:
        try:
            self._run_source()
        except Exception as exc:  # never die silently: a file must still end, a live stream must say it is down
            log.exception("%s: decode thread failed", self.name)
            self._set_state(SourceState.OFFLINE, f"internal error: {exc}")
            self.buffer.put(END, self._stop)

    def _run_source(self) -> None:
        if self.error:
            self._set_state(SourceState.OFFLINE, self.error)
            return
        attempt = 0
        while not self._stop.is_set():
            try:
                container = self._open()
            except SourceOpenError as exc:
                if not self.spec.live:
                    self._set_state(SourceState.OFFLINE, str(exc))
                    self.buffer.put(END, self._stop)
                    return
                if self.backoff.max_attempts is not None and attempt >= self.backoff.max_attempts:
                    self._set_state(SourceState.OFFLINE, f"gave up after {attempt} attempts: {exc}")
                    return
                delay = self.backoff.delay(attempt)
                attempt += 1
                self._set_state(SourceState.RECONNECTING, f"{exc}; retrying in {delay:.1f} s")
                self._stop.wait(delay)
                continue
            attempt = 0
            self._set_state(SourceState.ONLINE)
            error = self._decode(container)
            if self._stop.is_set():
                return
            if not self.spec.live:
                if not error and self.loop:
                    continue
                if error:
                    self._set_state(SourceState.OFFLINE, error)
                else:
                    self._set_state(SourceState.ENDED)
                self.buffer.put(END, self._stop)
                return
            self._set_state(SourceState.RECONNECTING, error or "stream ended")

    def _open(self):
        import av

        try:
            container = av.open(self.spec.target, format=self.spec.format, options=dict(self.spec.options),
                                timeout=self.timeouts)
        except FileNotFoundError as exc:
            raise SourceOpenError(f"{self.spec.url}: not found ({exc.strerror or exc})") from exc
        except av.error.InvalidDataError as exc:
            raise SourceOpenError(f"{self.spec.url}: not a video FFmpeg can read, or truncated/corrupt ({exc})") from exc
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceOpenError(f"{self.spec.url}: cannot open ({exc})") from exc
        if not container.streams.video:
            container.close()
            raise SourceOpenError(f"{self.spec.url}: has no video stream")
        return container

    def _decode(self, container) -> str:
        """Decode until the end, an error or stop; return the error text ('' for a clean end)."""
        import av

        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        started, first_pts = time.monotonic(), None
        try:
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return ""
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    self.corrupt_packets += 1  # one bad packet must not end the stream
                    continue
                for frame in frames:
                    pts = float(frame.time) if frame.time is not None else None
                    if self.realtime and pts is not None:
                        first_pts = pts if first_pts is None else first_pts
                        wait = started + (pts - first_pts) - time.monotonic()
                        if wait > 0 and self._stop.wait(wait):
                            return ""
                    item = Frame(self.name, self.decoded, pts, time.monotonic(), upright_rgb(frame))
                    self.decoded += 1
                    if not self.buffer.put(item, self._stop):
                        return ""
            return ""
        except (av.error.FFmpegError, OSError) as exc:
            return f"stream lost: {exc}"
        finally:
            container.close()
