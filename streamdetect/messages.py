"""Messages the service publishes (and the one a client sends), as small frozen dataclasses.

Their JSON form is specified by streamdetect/schema/messages.v1.json; every message in the tests is validated
against it. Fields are only ever added within a schema version; renames or removals bump SCHEMA_VERSION.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

SCHEMA_VERSION = 1
MESSAGE_TYPES = ("hello", "scores", "alert", "status", "track_end", "preview", "error")


def _now() -> float:
    return round(time.time(), 3)


@dataclass(frozen=True)
class FaceScore:
    track: int
    box: list[float]  # [x0, y0, x1, y1] frame pixels
    p_fake: float | None  # this frame's model output; None when the frame was not usable evidence
    confidence: float | None  # rolling p_fake over the window; None before any usable frame
    verdict: str  # unknown | clear | suspicious | alert
    frames: int  # usable frames seen for this face
    flags: list[str] = field(default_factory=list)  # too_small, too_dark, too_blurry, lost (detector lost it)


@dataclass(frozen=True)
class Message:
    def to_dict(self) -> dict:
        return {"v": SCHEMA_VERSION, "type": self.type, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class Hello(Message):
    type = "hello"
    server: str
    streams: list[str]
    model: dict
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Scores(Message):
    type = "scores"
    stream: str
    frame: int
    pts: float | None
    latency_ms: float  # capture (decode) -> this message
    faces: list[FaceScore]
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Alert(Message):
    type = "alert"
    stream: str
    track: int
    verdict: str
    previous: str
    confidence: float
    box: list[float]
    pts: float | None
    thumbnail: str | None = None  # base64 JPEG of the face crop
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Status(Message):
    type = "status"
    stream: str
    state: str  # connecting | online | reconnecting | offline | ended
    input_fps: float
    processed_fps: float
    latency_ms: dict | None  # {"p50": …, "p95": …} over the last few seconds
    dropped_frames: int
    corrupt_packets: int
    faces: int
    detail: str = ""
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class TrackEnd(Message):
    type = "track_end"
    stream: str
    track: int
    frames: int
    confidence: float | None
    verdict: str
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Preview(Message):
    type = "preview"
    stream: str
    frame: int
    width: int
    height: int
    jpeg: str  # base64 JPEG, downscaled, boxes/track ids/confidence drawn in
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Error(Message):
    type = "error"
    message: str
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Subscribe:
    """Client -> server: {"type": "subscribe", "streams": [...] | null, "types": [...] | null} (null = all)."""

    streams: frozenset[str] | None = None
    types: frozenset[str] | None = None

    @classmethod
    def parse(cls, text: str | bytes) -> Subscribe:
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("type") != "subscribe":
            raise ValueError('expected {"type": "subscribe", "streams": [...], "types": [...]}')
        unknown = set(raw) - {"type", "streams", "types"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        out = {}
        for key in ("streams", "types"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise ValueError(f"'{key}' must be a list of strings or null")
            out[key] = frozenset(value) if value is not None else None
        if out["types"] and not out["types"] <= set(MESSAGE_TYPES):
            raise ValueError(f"unknown message types {sorted(out['types'] - set(MESSAGE_TYPES))}; known: {MESSAGE_TYPES}")
        return cls(**out)

    def wants(self, message: dict) -> bool:
        if self.types is not None and message["type"] not in self.types:
            return False
        stream = message.get("stream")
        return self.streams is None or stream is None or stream in self.streams
