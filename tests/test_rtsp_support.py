"""Demo/self-test of the loopback RTSP test server in tests/support (import it as `tests.support.rtsp`).

Shows live frames, a restart on the same URL, and readers that fail fast (EOF when the server stops, a timeout
error when it hangs) instead of hanging.
"""
import threading
import time

import av
import numpy as np
import pytest

from tests.support.rtsp import RtspServer, make_test_clip, rtsp_available

OPEN = {"options": {"rtsp_transport": "tcp"}, "timeout": (5, 5)}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_test_clip(tmp_path_factory.mktemp("rtsp") / "clip.mp4")


@pytest.fixture
def rtsp(clip):
    reason = rtsp_available()
    if reason:
        pytest.skip(reason)
    with RtspServer() as srv:
        srv.publish(clip, "/cam1")
        yield srv


def read_frames(url, n, **kw):
    """Open `url`, decode `n` frames; returns (frames as rgb arrays, arrival times)."""
    frames, times = [], []
    with av.open(url, **{**OPEN, **kw}) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(time.monotonic())
            if len(frames) == n:
                break
    return frames, times


class Reader(threading.Thread):
    """Reads until the stream ends; records how it ended ("eof" or the exception) and the frame count."""

    def __init__(self, url, **kw):
        super().__init__(daemon=True)
        self.url, self.kw, self.frames, self.outcome, self.ended_at = url, kw, 0, None, None

    def run(self):
        try:
            with av.open(self.url, **{**OPEN, **self.kw}) as c:
                for _ in c.decode(video=0):
                    self.frames += 1
            self.outcome = "eof"
        except Exception as e:  # noqa: BLE001 - recorded for the assertion
            self.outcome = e
        self.ended_at = time.monotonic()

    def wait_frames(self, n, timeout=30):  # a bound on failure only
        deadline = time.monotonic() + timeout
        while self.frames < n and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.05)
        assert self.frames >= n, f"reader got {self.frames} frames, ended with {self.outcome!r}"


def test_reads_live_frames_at_real_time_pace(rtsp):
    frames, times = read_frames(rtsp.url("/cam1"), 120)  # OPEN's timeouts (5 s) fail a stream that never starts
    assert frames[0].shape == (240, 320, 3)
    assert not np.array_equal(frames[30], frames[31]), "pattern should move"
    # Frames buffered while the stream was probed arrive in a burst; after that they come at ~30 fps: frames 30-119
    # span 3 s. A lower bound with 1 s to spare: a loaded machine only delays reads, and a reader that lagged at
    # frame 30 and caught up by frame 119 still passes; a stream that is not paced delivers them in a blink.
    assert times[119] - times[29] > 2.0


def test_restart_same_url_reads_again(rtsp):
    url = rtsp.url("/cam1")
    assert len(read_frames(url, 30)[0]) == 30
    rtsp.restart()
    assert rtsp.url("/cam1") == url
    assert len(read_frames(url, 30)[0]) == 30  # within OPEN's timeouts


def test_reader_during_restart_gets_eof_then_reconnects(rtsp):
    url = rtsp.url("/cam1")
    reader = Reader(url, timeout=(5, 120))  # a read timeout far beyond the join below: only the server's going ends it
    reader.start()
    reader.wait_frames(10)
    rtsp.restart(downtime=1.0)
    reader.join(timeout=60)
    assert not reader.is_alive(), "reader hung across a server restart"
    # PyAV/FFmpeg reports a closed RTSP/TCP connection as a plain end of stream (or an error), not as a read timeout.
    assert reader.outcome == "eof" or isinstance(reader.outcome, av.error.FFmpegError)
    assert len(read_frames(url, 30)[0]) == 30


def test_reader_of_hung_server_times_out(rtsp):
    reader = Reader(rtsp.url("/cam1"), timeout=(5, 2))
    reader.start()
    reader.wait_frames(10)
    rtsp.pause()
    try:
        paused = time.monotonic()
        reader.join(timeout=15)
        assert not reader.is_alive(), "reader hung on a silent server despite the read timeout"
        assert isinstance(reader.outcome, av.error.FFmpegError), reader.outcome  # ExitError after ~2x read timeout
        print(f"hung server detected after {reader.ended_at - paused:.1f}s")
    finally:
        rtsp.resume()
    assert len(read_frames(rtsp.url("/cam1"), 30)[0]) == 30
