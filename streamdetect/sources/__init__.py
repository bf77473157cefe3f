"""Sources: video in (files, RTSP, HLS, devices, screen, lavfi) through PyAV, one decode thread each."""

from streamdetect.sources.base import DropPolicy, Frame, FrameSource, SourceState, StatusEvent
from streamdetect.sources.pyav import Backoff, VideoSource
from streamdetect.sources.spec import SourceSpec, parse_source

__all__ = ["Backoff", "DropPolicy", "Frame", "FrameSource", "SourceSpec", "SourceState", "StatusEvent", "VideoSource", "parse_source"]
