"""Source URLs -> what PyAV's av.open needs, and whether the source is live (drop frames) or a file (wait).

  path/to/clip.mp4, file:///abs/clip.mp4       file
  rtsp://, rtsps://                            live, TCP by default (transport="udp" to change)
  http(s)://….m3u8 (HLS), rtmp://, srt://, udp://   live; http(s) URLs of a video file are files
  webcam:0  or /dev/video0                     capture device: v4l2 (Linux), avfoundation (macOS), dshow (Windows)
  screen:  screen::0.0+100,200  screen:…@1280x720   screen capture (x11grab / avfoundation / gdigrab)
  lavfi:testsrc2=size=640x480:rate=30          FFmpeg's generated test sources
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from streamdetect.errors import SourceOpenError, UnsupportedSourceError

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp")
FILE_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".ts", ".flv")


@dataclass(frozen=True)
class SourceSpec:
    name: str
    url: str  # as the user wrote it
    target: str  # first argument of av.open
    format: str | None = None  # av.open(format=…) for devices and lavfi
    options: dict = field(default_factory=dict)  # FFmpeg demuxer options
    live: bool = False


def parse_source(url: str, name: str | None = None, transport: str = "tcp") -> SourceSpec:
    """Turn a user's source string into a SourceSpec, or raise an error that says what is accepted."""
    if not isinstance(url, str) or not url.strip():
        raise UnsupportedSourceError("empty source; give a file path, rtsp:// URL, webcam:0, screen: or lavfi:…")
    url = url.strip()
    name = name or _default_name(url)
    if transport not in ("tcp", "udp"):
        raise ValueError(f"RTSP transport must be tcp or udp, got {transport!r}")
    if url.startswith("webcam:") or re.fullmatch(r"/dev/video\d+", url):
        device = url.split(":", 1)[1] if url.startswith("webcam:") else url
        return SourceSpec(name, url, **_capture_device(device), live=True)
    if url.startswith("screen:"):
        return SourceSpec(name, url, **_screen(url[len("screen:"):]), live=True)
    if url.startswith("lavfi:"):
        return SourceSpec(name, url, url[len("lavfi:"):], format="lavfi")
    scheme = urlparse(url).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        return SourceSpec(name, url, url, options={"rtsp_transport": transport}, live=True)
    if scheme in LIVE_SCHEMES:
        return SourceSpec(name, url, url, live=True)
    if scheme in ("http", "https"):
        is_file = urlparse(url).path.lower().endswith(FILE_SUFFIXES)
        return SourceSpec(name, url, url, live=not is_file)
    if scheme == "file":
        url = urlparse(url).path
    elif scheme and len(scheme) > 1:  # (a one-letter "scheme" is a Windows drive)
        raise UnsupportedSourceError(
            f"unsupported source {url!r}: scheme '{scheme}://' is not one of file, rtsp, rtsps, http(s)/HLS, rtmp, srt, "
            f"udp, or the forms webcam:N, screen:, lavfi:…"
        )
    path = Path(url).expanduser()
    if not path.is_file():
        raise SourceOpenError(f"video file {path} does not exist (or is not a file); check the path")
    return SourceSpec(name, url, str(path))


def redact(text: str, url: str) -> str:
    """`text` with the URL's credentials (rtsp://user:pass@host) removed: status details reach every client."""
    parsed = urlparse(url)
    if not parsed.password and not parsed.username:
        return text
    public = parsed._replace(netloc=parsed.netloc.rsplit("@", 1)[1]).geturl()
    return text.replace(url, public).replace(parsed.netloc.rsplit("@", 1)[0] + "@", "")


def _default_name(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme in LIVE_SCHEMES + ("http", "https"):
        return (parsed.hostname or "stream") + (parsed.path.replace("/", "_").rstrip("_") or "")
    if url.startswith(("webcam:", "lavfi:", "screen:")):
        kind, _, rest = url.partition(":")
        return kind + (("-" + re.split(r"[=:,@+]", rest.strip("/"))[0].replace("/", "")) if rest else "")
    return Path(url).stem or "source"


def _capture_device(device: str) -> dict:
    if sys.platform == "darwin":
        return {"target": device, "format": "avfoundation"}
    if sys.platform == "win32":
        return {"target": device if device.startswith("video=") else f"video={device}", "format": "dshow"}
    target = device if device.startswith("/dev/") else f"/dev/video{device}"
    return {"target": target, "format": "v4l2"}


def _screen(rest: str) -> dict:
    """screen:[DISPLAY+X,Y][@WxH] — a region of the screen, e.g. a call window."""
    region, _, size = rest.partition("@")
    options = {"video_size": size} if size else {}
    if size and not re.fullmatch(r"\d+x\d+", size):
        raise UnsupportedSourceError(f"screen region size must be WIDTHxHEIGHT, got {size!r}")
    if sys.platform == "darwin":
        return {"target": region or "Capture screen 0", "format": "avfoundation", "options": options}
    if sys.platform == "win32":
        return {"target": region or "desktop", "format": "gdigrab", "options": options}
    return {"target": region or ":0.0", "format": "x11grab", "options": options}
