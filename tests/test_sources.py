"""Sources: URL forms, real PyAV decoding, drop policies, corrupt/truncated/missing input, reconnect backoff."""

import sys
import time

import cv2
import numpy as np
import pytest

from streamdetect.errors import SourceOpenError, UnsupportedSourceError
from streamdetect.sources import Backoff, DropPolicy, SourceState, VideoSource, parse_source
from streamdetect.sources.base import END
from tests.conftest import make_clip
from tests.support.clips import phone_clip, sample_frame


def drain(source, timeout=20.0, delay=0.0):
    frames, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = source.read()
        if item is END:
            return frames, True
        if item is None:
            time.sleep(0.002)
            continue
        frames.append(item)
        time.sleep(delay)
    return frames, False


def test_url_forms(tmp_path):
    clip = make_clip(tmp_path / "a.mp4", seconds=0.2)
    assert parse_source(str(clip)).live is False
    assert parse_source(f"file://{clip}").target == str(clip)
    rtsp = parse_source("rtsp://cam.local:8554/live")
    assert rtsp.live and rtsp.options == {"rtsp_transport": "tcp"}
    assert parse_source("rtsp://cam/x", transport="udp").options == {"rtsp_transport": "udp"}
    assert parse_source("https://example.com/live/index.m3u8").live is True
    assert parse_source("https://example.com/clip.mp4").live is False
    lavfi = parse_source("lavfi:testsrc2=size=64x48:rate=5")
    assert (lavfi.format, lavfi.target, lavfi.name) == ("lavfi", "testsrc2=size=64x48:rate=5", "lavfi-testsrc2")
    if sys.platform.startswith("linux"):
        assert (parse_source("webcam:1").format, parse_source("webcam:1").target) == ("v4l2", "/dev/video1")
        screen = parse_source("screen::0.0+100,200@640x360")
        assert (screen.format, screen.target, screen.options) == ("x11grab", ":0.0+100,200", {"video_size": "640x360"})


def test_bad_urls_are_explained(tmp_path):
    with pytest.raises(SourceOpenError, match="does not exist"):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(UnsupportedSourceError, match="scheme 'gopher://' is not one of"):
        parse_source("gopher://host/x")
    with pytest.raises(UnsupportedSourceError, match="WIDTHxHEIGHT"):
        parse_source("screen:@big")
    with pytest.raises(UnsupportedSourceError, match="empty source"):
        parse_source("  ")


def test_file_delivers_every_frame_with_timestamps(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", seconds=2, fps=30)
    events = []
    source = VideoSource(parse_source(str(clip)), on_status=events.append).start()
    assert source.policy is DropPolicy.WAIT
    frames, ended = drain(source, delay=0.003)  # a slow consumer: a file must still lose nothing
    assert ended and len(frames) == 60 and source.buffer.dropped == 0
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and pts[1] - pts[0] == pytest.approx(1 / 30, abs=1e-3)
    assert [e.state for e in events] == [SourceState.ONLINE, SourceState.ENDED]
    assert frames[0].rgb.shape == (240, 320, 3)


def test_live_policy_drops_oldest_and_keeps_latency_bounded(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", seconds=2, fps=30)
    spec = parse_source(str(clip))
    source = VideoSource(spec, policy=DropPolicy.DROP_OLDEST, buffer_size=2).start()
    time.sleep(1.0)  # nobody reads: the decoder runs ahead and must discard old frames, not block
    frames, ended = drain(source)
    assert ended
    assert source.buffer.dropped > 0 and len(frames) + source.buffer.dropped == 60
    assert frames[-1].index == 59  # the newest frame survives


def test_realtime_pacing(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", seconds=1, fps=30)
    start = time.monotonic()
    frames, _ = drain(VideoSource(parse_source(str(clip)), realtime=True).start())
    assert len(frames) == 30 and time.monotonic() - start >= 0.9


def test_corrupt_packets_do_not_end_the_stream(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", seconds=3, fps=30, size=(320, 240))
    data = bytearray(clip.read_bytes())
    mdat = data.find(b"mdat")
    for offset in range(mdat + 20_000, mdat + 60_000, 997):  # scribble over frames in the middle
        data[offset : offset + 40] = b"\xff" * 40
    bad = tmp_path / "scribbled.mp4"
    bad.write_bytes(bytes(data))
    source = VideoSource(parse_source(str(bad))).start()
    frames, ended = drain(source)
    assert ended and source.state is SourceState.ENDED
    assert len(frames) >= 45, "decoding stopped at the damage instead of carrying on"


@pytest.mark.parametrize("content, expected", [
    (None, "not a video FFmpeg can read, or truncated/corrupt"),  # truncated MP4 (no moov atom)
    (b"just some text\n" * 100, "not a video FFmpeg can read"),
])
def test_unreadable_files_go_offline_with_a_reason(tmp_path, content, expected):
    path = tmp_path / "bad.mp4"
    if content is None:
        whole = make_clip(tmp_path / "whole.mp4", seconds=1).read_bytes()
        content = whole[: len(whole) // 3]
    path.write_bytes(content)
    events = []
    source = VideoSource(parse_source(str(path)), on_status=events.append).start()
    frames, ended = drain(source)
    assert ended and frames == [] and source.state is SourceState.OFFLINE
    assert expected in events[-1].detail


def test_unreachable_live_source_retries_with_backoff():
    events = []
    spec = parse_source("rtsp://127.0.0.1:9/nothing")  # the discard port: connection refused at once
    source = VideoSource(spec, on_status=events.append, backoff=Backoff(initial_s=0.05, max_s=0.2, max_attempts=3),
                         open_timeout_s=1).start()
    deadline = time.monotonic() + 15
    while source.state is not SourceState.OFFLINE and time.monotonic() < deadline:
        time.sleep(0.05)
    states = [e.state for e in events]
    assert states.count(SourceState.RECONNECTING) == 3 and states[-1] is SourceState.OFFLINE
    assert "gave up after 3 attempts" in events[-1].detail and "cannot open" in events[-1].detail


def test_backoff_grows_caps_and_jitters():
    b = Backoff(initial_s=1, max_s=8, factor=2)
    for attempt, full in [(0, 1), (1, 2), (2, 4), (3, 8), (6, 8)]:
        delays = {round(b.delay(attempt), 6) for _ in range(50)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1, "no jitter: sources lost together would retry in lockstep"


def test_drop_oldest_never_blocks_the_decoder():
    import threading

    from streamdetect.sources.base import FrameBuffer

    buffer, stop = FrameBuffer(1, DropPolicy.DROP_OLDEST), threading.Event()
    start = time.monotonic()
    for i in range(50):
        assert buffer.put(i, stop)
    assert time.monotonic() - start < 0.05  # a live camera is never made to wait for processing
    assert buffer.dropped == 49 and buffer.get_nowait() == 49


def test_backoff_survives_long_outages():
    assert Backoff(initial_s=0.5, max_s=10).delay(5000) <= 10  # hours of retries must not overflow


def test_camera_credentials_never_reach_status_messages():
    from streamdetect.sources.spec import redact

    url = "rtsp://admin:s3cret@127.0.0.1:9/live"
    events = []
    source = VideoSource(parse_source(url), on_status=events.append, backoff=Backoff(0.05, 0.1, max_attempts=1),
                         open_timeout_s=1).start()
    deadline = time.monotonic() + 10
    while source.state is not SourceState.OFFLINE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events and all("s3cret" not in e.detail and "admin" not in e.detail for e in events)
    assert "rtsp://127.0.0.1:9/live" in events[-1].detail
    assert redact("no url here", url) == "no url here"


def test_phone_video_is_decoded_upright(tmp_path):
    """A portrait phone clip (pixels stored sideways + display rotation) reaches the face stage the way a player
    shows it, not lying on its side."""
    frames, ended = drain(VideoSource(parse_source(str(phone_clip(tmp_path / "phone.mp4")))).start())
    upright = cv2.resize(sample_frame(0), (320, 180), interpolation=cv2.INTER_AREA)
    assert ended and len(frames) == 10 and frames[0].rgb.shape == (180, 320, 3)
    assert np.abs(frames[0].rgb.astype(int) - upright).mean() < 6  # codec error only; upside down is ~75
