"""Python client of the live service, shared by `streamdetect watch`, `streamdetect guard` and your own code.

    async with StreamDetectClient("ws://127.0.0.1:8765", token=T, streams=["call"], types=["alert"]) as client:
        async for event in client:          # HelloEvent, ScoresEvent, AlertEvent, ..., ConnectionEvent
            ...

Every message is checked against streamdetect/schema/messages.v1.json (with jsonschema when it is installed,
else by the schema's required keys) and turned into a frozen dataclass, generated from the service's own message
dataclasses (streamdetect.messages: same fields, lists as tuples); fields the client does not know are
ignored (the schema only ever adds fields within a version) and message types it does not know arrive as
UnknownEvent. When the server goes away the client reconnects with exponential backoff and jitter and says so
with ConnectionEvent("disconnected" / "connected"), so a UI can show it. A refused token raises AuthError at
once: retrying cannot fix it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import time
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from typing import AsyncIterator, ClassVar, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from streamdetect import messages
from streamdetect.errors import StreamDetectError
from streamdetect.retry import Backoff

log = logging.getLogger(__name__)

WS_PATH = "/ws"
POLICY_VIOLATION = 1008  # the server's close code for a subscription it refuses: reconnecting cannot help


class AuthError(StreamDetectError):
    """The service refused the token (HTTP 401/403 before the WebSocket upgrade)."""


class ConnectionFailed(StreamDetectError):
    """The service could not be reached, or refused the connection for a reason other than the token."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable  # False: a wrong URL or refused subscription, which no retry can fix


# -- typed events -------------------------------------------------------------------------------------------
# One event class per message type, made from streamdetect.messages' dataclasses; tests/test_contracts.py checks
# both against the JSON Schema. HelloEvent(server, streams, model, ts), ScoresEvent(stream, frame, pts, latency_ms,
# faces: tuple[FaceEvent, ...], ts), AlertEvent(..., thumbnail, ts).thumbnail_jpeg(), StatusEvent(...).latency_p95,
# TrackEndEvent, PreviewEvent, ErrorEvent: see the message dataclasses for every field and its meaning.
@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = ""
    raw: dict = field(default_factory=dict, repr=False, compare=False, kw_only=True)  # the message as received


def _event_field(hint, events: dict) -> tuple[object, type | None]:
    """A message field's type -> the event field's type (lists become tuples, nested messages their events)
    and, for a list of nested messages, the event class its items become."""
    if typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0]
        item_event = events.get(item)
        return tuple[item_event or item, ...], item_event
    return hint, None


def _event_class(message: type, name: str, base: type | None = Event, events: dict | None = None, doc: str = "",
                 **methods) -> type:
    """The client's frozen event dataclass for one of streamdetect.messages' dataclasses: the same fields in the
    same order, all required (the schema requires every one), so the two cannot drift apart."""
    events = events or {}
    hints = typing.get_type_hints(message)
    fields = []
    for f in dataclasses.fields(message):
        kind, item = _event_field(hints[f.name], events)
        fields.append((f.name, kind, field(metadata={"item": item} if item else {})))
    namespace = {"__module__": __name__, "__doc__": doc or f"A {message.__name__} message "
                 f"(streamdetect.messages.{message.__name__}) as the client receives it.", **methods}
    if base is not None:
        namespace["type"] = message.type
    return dataclasses.make_dataclass(name, fields, bases=(base,) if base else (), frozen=True, namespace=namespace)


FaceEvent = _event_class(messages.FaceScore, "FaceEvent", base=None, doc="One face of a ScoresEvent.")
HelloEvent = _event_class(messages.Hello, "HelloEvent")
ScoresEvent = _event_class(messages.Scores, "ScoresEvent", events={messages.FaceScore: FaceEvent})
AlertEvent = _event_class(
    messages.Alert, "AlertEvent",
    thumbnail_jpeg=lambda self: base64.b64decode(self.thumbnail) if self.thumbnail else None)
StatusEvent = _event_class(
    messages.Status, "StatusEvent",
    latency_p95=property(lambda self: self.latency_ms["p95"] if self.latency_ms else None))
TrackEndEvent = _event_class(messages.TrackEnd, "TrackEndEvent")
PreviewEvent = _event_class(messages.Preview, "PreviewEvent")
ErrorEvent = _event_class(messages.Error, "ErrorEvent")


@dataclass(frozen=True)
class UnknownEvent(Event):
    """A message of a type this client does not know (a newer server), or one that failed validation (`problem`)."""

    type: ClassVar[str] = "unknown"
    type_name: str
    problem: str = ""


@dataclass(frozen=True)
class ConnectionEvent(Event):
    """Made by the client, not sent by the server: the connection came up or went away."""

    type: ClassVar[str] = "connection"
    state: str  # "connected" | "disconnected"
    detail: str = ""
    retry_in: float | None = None  # seconds until the next attempt, when disconnected and reconnecting
    ts: float = field(default_factory=time.time)


EVENT_TYPES: dict[str, type[Event]] = {c.type: c for c in (
    HelloEvent, ScoresEvent, AlertEvent, StatusEvent, TrackEndEvent, PreviewEvent, ErrorEvent)}
if set(EVENT_TYPES) != set(messages.MESSAGE_TYPES):  # a message type added without its event
    raise ImportError(f"streamdetect.clients has events for {sorted(EVENT_TYPES)}, the service sends "
                      f"{sorted(messages.MESSAGE_TYPES)}")


# -- validation and parsing -------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _schema() -> dict:
    return json.loads((files("streamdetect.schema") / "messages.v1.json").read_text())


@lru_cache(maxsize=None)
def _validator(kind: str):
    """A jsonschema validator for one message type, or None without jsonschema (a dev-only dependency).
    Per type, not the top-level oneOf: that would reject every type added after this client was written."""
    try:
        import jsonschema
    except ImportError:
        return None
    schema = _schema()
    return jsonschema.Draft202012Validator({"$schema": schema["$schema"], "$defs": schema["$defs"],
                                            "$ref": f"#/$defs/{kind}"})


def _required(definition: dict) -> set[str]:
    """A definition's required keys, including those of the definitions it extends with allOf."""
    keys = set(definition.get("required", ()))
    for part in definition.get("allOf", ()):
        keys |= _required(_schema()["$defs"][part["$ref"].rsplit("/", 1)[1]])
    return keys


def validation_problem(message: dict) -> str:
    """'' when the message is valid for its type (in the schema), else what is wrong with it."""
    kind = message.get("type")
    defs = _schema()["$defs"]
    validator = _validator(kind)
    if validator is not None:
        error = next(iter(validator.iter_errors(message)), None)
        return "" if error is None else f"{'/'.join(map(str, error.absolute_path)) or 'message'}: {error.message}"
    missing = _required(defs[kind]) - set(message)
    if kind == "scores" and not missing:  # faces are parsed field by field below: check them too
        face_keys = _required(defs["face"])
        missing = {f"faces[{i}].{k}" for i, f in enumerate(message["faces"]) for k in face_keys - set(f)}
    return f"missing {sorted(missing)}" if missing else ""


def _build(cls, data: dict, **extra):
    """A dataclass from a message dict: known fields only (lists become tuples, so events stay immutable)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name == "raw" or f.name not in data:
            continue
        value = data[f.name]
        if f.metadata.get("item"):  # a list of nested messages (a ScoresEvent's faces)
            value = tuple(_build(f.metadata["item"], item) for item in value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs, **extra)


def parse_event(message: dict) -> Event:
    """A received message (decoded JSON) -> its typed event."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return UnknownEvent(type_name="", problem="not a JSON object with a 'type'", raw={"message": message})
    kind = message["type"]
    if kind not in EVENT_TYPES or kind not in _schema()["$defs"]:
        return UnknownEvent(type_name=kind, raw=message)
    problem = validation_problem(message)
    if problem:
        log.warning("invalid %s message from the server: %s", kind, problem)
        return UnknownEvent(type_name=kind, problem=problem, raw=message)
    return _build(EVENT_TYPES[kind], message, raw=message)


# -- URLs ---------------------------------------------------------------------------------------------------------
def service_url(url: str, streams: Iterable[str] | None = None, types: Iterable[str] | None = None) -> str:
    """ws://HOST:PORT (or http://…) -> ws://HOST:PORT/ws?streams=…&types=… (other query keys, e.g. token, kept)."""
    parts = urlsplit(url if "://" in url else f"ws://{url}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ConnectionFailed(f"{url}: not a WebSocket URL; give ws://HOST:PORT", retryable=False)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("streams", "types")]
    for key, names in (("streams", streams), ("types", types)):
        if names is not None:
            query.append((key, ",".join(names)))
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") or WS_PATH, urlencode(query, safe=","), ""))


def redact(url: str) -> str:
    """The URL without a ?token= value, for messages and logs."""
    parts = urlsplit(url)
    query = [(k, "***" if k == "token" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query, safe=",*")))


def _names(values: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(v for part in ([values] if isinstance(values, str) else values) for v in part.split(",") if v)


# -- the client -------------------------------------------------------------------------------------------------
class StreamDetectClient:
    def __init__(self, url: str, token: str | None = None, streams: Iterable[str] | None = None,
                 types: Iterable[str] | None = None, reconnect: bool = True, backoff: tuple[float, float] = (0.5, 10.0),
                 fail_fast: bool = False, open_timeout: float = 5.0):
        """fail_fast: raise ConnectionFailed if the *first* connection fails even with reconnect=True (command-line
        tools report a wrong URL at once); the client then reconnects only after a first success."""
        self.url = service_url(url)  # raises early on a URL that can never work
        self.token, self.reconnect, self.fail_fast = token, reconnect, fail_fast
        self.streams, self.types = _names(streams), _names(types)
        self.backoff = Backoff(initial_s=backoff[0], max_s=backoff[1])
        self.open_timeout = open_timeout
        self._ws: ClientConnection | None = None
        self._announce = False  # a connection was made that has not been reported with a ConnectionEvent yet
        self._ever = False  # a connection has succeeded at least once (fail_fast applies only before that)
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def __aenter__(self) -> StreamDetectClient:
        if self.fail_fast or not self.reconnect:
            await self._connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop: the `async for` over the client ends."""
        self._closed = True
        if self._ws is not None:
            await self._ws.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def subscribe(self, streams: Iterable[str] | None = None, types: Iterable[str] | None = None) -> None:
        """Change the filter (None = all). Also used for every later reconnection."""
        self.streams, self.types = _names(streams), _names(types)
        if self._ws is not None:
            message = {"type": "subscribe", "streams": self.streams and list(self.streams),
                       "types": self.types and list(self.types)}
            try:
                await self._ws.send(json.dumps(message))
            except ConnectionClosed:
                pass  # the next connection's URL carries the new filter

    async def _connect(self) -> None:
        url = service_url(self.url, self.streams, self.types)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        where = redact(self.url)
        try:
            self._ws = await connect(url, additional_headers=headers, open_timeout=self.open_timeout,
                                     max_size=2**22)  # alerts carry thumbnails, previews whole frames
        except InvalidStatus as exc:
            code = exc.response.status_code
            if code in (401, 403):
                hint = "no token was given" if not self.token else "wrong token"
                raise AuthError(f"{where} refused the connection (HTTP {code}): {hint}") from None
            raise ConnectionFailed(f"{where} answered HTTP {code} instead of a WebSocket; is this a StreamDetect "
                                   f"service URL (ws://HOST:PORT/ws)?", retryable=code >= 500) from None
        except InvalidURI as exc:
            raise ConnectionFailed(f"{where}: invalid URL ({exc})", retryable=False) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (getattr(exc, "strerror", None) or str(exc))
            raise ConnectionFailed(f"cannot connect to {where}: {reason}; is `streamdetect serve` running "
                                   f"there?") from None
        self._announce = True

    async def _events(self) -> AsyncIterator[Event]:
        attempt = 0
        while not self._closed:
            if self._ws is None:
                try:
                    await self._connect()
                except ConnectionFailed as exc:
                    if not (self.reconnect and exc.retryable) or (self.fail_fast and not self._ever):
                        raise
                    delay = self.backoff.delay(attempt)
                    attempt += 1
                    yield ConnectionEvent("disconnected", str(exc), retry_in=round(delay, 2))
                    await asyncio.sleep(delay)
                    continue
            if self._announce:
                self._announce, self._ever = False, True
                yield ConnectionEvent("connected", redact(self.url))
            ws, opened, last_error = self._ws, time.monotonic(), ""
            try:
                async for text in ws:
                    try:
                        message = json.loads(text)
                    except json.JSONDecodeError as exc:
                        yield UnknownEvent(type_name="", problem=f"not JSON: {exc}", raw={"text": str(text)[:200]})
                        continue
                    event = parse_event(message)
                    if isinstance(event, ErrorEvent):
                        last_error = event.message  # says why, if the server closes the connection next
                    yield event
            except ConnectionClosed:
                pass
            self._ws = None
            if self._closed:
                return
            reason = f"{redact(self.url)} closed the connection" + (f": {ws.close_reason}" if ws.close_reason else "")
            if ws.close_code == POLICY_VIOLATION:
                raise ConnectionFailed(f"{reason} ({last_error})" if last_error else reason, retryable=False)
            if not self.reconnect:
                yield ConnectionEvent("disconnected", reason)
                return
            # A connection that dropped at once counts as a failed attempt, so a flapping server is not hammered.
            attempt = 0 if time.monotonic() - opened > self.backoff.max_s else attempt + 1
            delay = self.backoff.delay(attempt)
            yield ConnectionEvent("disconnected", f"{reason}; reconnecting", retry_in=round(delay, 2))
            await asyncio.sleep(delay)
