"""Messages the service publishes (and the one a client sends), as small frozen dataclasses.

Their JSON form is specified by streamdetect/schema/messages.v1.json; every message in the tests is validated
against it. Fields are only ever added within a schema version; renames or removals bump SCHEMA_VERSION.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import ClassVar, Iterable

SCHEMA_VERSION = 1
MAX_CLIENT_MESSAGE_BYTES = 64 * 1024  # a subscription is a few names: anything larger is refused unread

# type -> Message subclass, filled as the subclasses below are defined (the one list of message types)
MESSAGE_CLASSES: dict[str, type[Message]] = {}


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
    """Base of every server -> client message; a subclass with a `type` registers itself in MESSAGE_CLASSES."""

    type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("type")
        if kind:
            if kind in MESSAGE_CLASSES:
                raise TypeError(f"message type {kind!r} is defined twice ({MESSAGE_CLASSES[kind].__name__}, {cls.__name__})")
            MESSAGE_CLASSES[kind] = cls

    def to_dict(self) -> dict:
        return {"v": SCHEMA_VERSION, "type": self.type, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class Hello(Message):
    type: ClassVar[str] = "hello"
    server: str
    streams: list[str]
    model: dict
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Scores(Message):
    type: ClassVar[str] = "scores"
    stream: str
    frame: int
    pts: float | None
    latency_ms: float  # capture (decode) -> this message
    faces: list[FaceScore]
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Alert(Message):
    type: ClassVar[str] = "alert"
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
    type: ClassVar[str] = "status"
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
    type: ClassVar[str] = "track_end"
    stream: str
    track: int
    frames: int
    confidence: float | None
    verdict: str
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Preview(Message):
    type: ClassVar[str] = "preview"
    stream: str
    frame: int
    width: int
    height: int
    jpeg: str  # base64 JPEG, downscaled, boxes/track ids/confidence drawn in
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class Error(Message):
    type: ClassVar[str] = "error"
    message: str
    ts: float = field(default_factory=_now)


MESSAGE_TYPES: tuple[str, ...] = tuple(MESSAGE_CLASSES)  # ("hello", "scores", "alert", ...), in definition order


def _names(values: Iterable[str] | None, key: str) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"'{key}' must be a list of strings or null")
    return frozenset(values)


@dataclass(frozen=True)
class Subscribe:
    """Client -> server: {"type": "subscribe", "streams": [...] | null, "types": [...] | null} (null = all).

    The one place a subscription filter is checked: constructing one (from a URL's query, or `parse` from a
    client's message) raises ValueError for a type that is not in MESSAGE_TYPES or a filter that is not a
    collection of strings. Any iterable of names is accepted and kept as a frozenset.
    """

    streams: frozenset[str] | None = None
    types: frozenset[str] | None = None

    def __post_init__(self):
        object.__setattr__(self, "streams", _names(self.streams, "streams"))
        object.__setattr__(self, "types", _names(self.types, "types"))
        if self.types and not self.types <= set(MESSAGE_TYPES):
            raise ValueError(f"unknown message types {sorted(self.types - set(MESSAGE_TYPES))}; known: {list(MESSAGE_TYPES)}")

    @classmethod
    def parse(cls, text: str | bytes) -> Subscribe:
        """A client's subscribe message -> Subscribe; ValueError (saying why) for anything else."""
        size = len(text) if isinstance(text, (bytes, bytearray)) else len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_CLIENT_MESSAGE_BYTES:
            raise ValueError(f"message of {size} bytes is too large; a subscription is at most "
                             f"{MAX_CLIENT_MESSAGE_BYTES} bytes")
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        except RecursionError:
            raise ValueError("not a subscription: JSON nested too deeply") from None
        if not isinstance(raw, dict) or raw.get("type") != "subscribe":
            raise ValueError('expected {"type": "subscribe", "streams": [...], "types": [...]}')
        unknown = set(raw) - {"type", "streams", "types"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        for key in ("streams", "types"):
            if raw.get(key) is not None and not isinstance(raw[key], list):
                raise ValueError(f"'{key}' must be a list of strings or null")
        return cls(raw.get("streams"), raw.get("types"))

    def wants(self, message: dict) -> bool:
        if self.types is not None and message["type"] not in self.types:
            return False
        stream = message.get("stream")
        return self.streams is None or stream is None or stream in self.streams
