"""One message contract: the service's dataclasses (streamdetect.messages), the client's events (streamdetect.clients)
and the JSON Schema (streamdetect/schema/messages.v1.json) name the same types, fields and required fields; and a
client's subscription is checked in one place (Subscribe)."""

import dataclasses
import json
from importlib.resources import files

import jsonschema
import pytest

from streamdetect import messages
from streamdetect.clients import library as client
from streamdetect.messages import MESSAGE_CLASSES, MESSAGE_TYPES, FaceScore, Subscribe

SCHEMA = json.loads((files("streamdetect.schema") / "messages.v1.json").read_text())
DEFS = SCHEMA["$defs"]
ENVELOPE = {"v", "type"}  # added by Message.to_dict, not dataclass fields


def _properties(definition: dict) -> set[str]:
    keys = set(definition.get("properties", ()))
    for part in definition.get("allOf", ()):
        keys |= _properties(DEFS[part["$ref"].rsplit("/", 1)[1]])
    return keys


def _required(definition: dict) -> set[str]:
    keys = set(definition.get("required", ()))
    for part in definition.get("allOf", ()):
        keys |= _required(DEFS[part["$ref"].rsplit("/", 1)[1]])
    return keys


def _names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "raw"]


def test_message_types_come_from_the_dataclasses_and_match_the_schema():
    assert MESSAGE_TYPES == tuple(MESSAGE_CLASSES)
    assert MESSAGE_TYPES == ("hello", "scores", "alert", "status", "track_end", "preview", "error")
    assert all(issubclass(cls, messages.Message) and cls.type == kind for kind, cls in MESSAGE_CLASSES.items())
    assert [ref["$ref"].rsplit("/", 1)[1] for ref in SCHEMA["oneOf"]] == list(MESSAGE_TYPES)
    assert set(client.EVENT_TYPES) == set(MESSAGE_TYPES)
    for kind in MESSAGE_TYPES:
        assert DEFS[kind]["properties"]["type"] == {"const": kind}


@pytest.mark.parametrize("kind", MESSAGE_TYPES)
def test_dataclass_client_event_and_schema_have_the_same_fields(kind):
    message, event, definition = MESSAGE_CLASSES[kind], client.EVENT_TYPES[kind], DEFS[kind]
    fields = _names(message)
    assert _properties(definition) - ENVELOPE == set(fields)
    assert _required(definition) - ENVELOPE == set(fields)  # every field is always sent
    assert _names(event) == fields  # same names, same order
    assert event.type == kind


def test_face_fields_agree():
    assert _names(FaceScore) == _names(client.FaceEvent)
    assert set(DEFS["face"]["properties"]) == set(DEFS["face"]["required"]) == set(_names(FaceScore))


def _samples() -> list[messages.Message]:
    face = FaceScore(3, [1.0, 2.0, 30.0, 40.0], 0.9, 0.8, "alert", 12, ["too_dark"])
    return [messages.Hello("streamdetect", ["cam"], {"name": "m"}),
            messages.Scores("cam", 7, 0.25, 12.5, [face]),
            messages.Alert("cam", 3, "alert", "suspicious", 0.8, [1.0, 2.0, 30.0, 40.0], 0.25, "aGk="),
            messages.Status("cam", "online", 30.0, 29.0, {"p50": 10.0, "p95": 20.0}, 0, 0, 1),
            messages.TrackEnd("cam", 3, 12, 0.8, "alert"),
            messages.Preview("cam", 7, 480, 270, "aGk="),
            messages.Error("bad")]


def _plain(value):
    """Events hold tuples and nested events where the JSON has lists and objects: compare them as plain data."""
    if dataclasses.is_dataclass(value):
        return {name: _plain(getattr(value, name)) for name in _names(type(value))}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def test_every_message_validates_and_parses_into_its_event():
    validator = jsonschema.Draft202012Validator(SCHEMA)
    samples = _samples()
    assert {m.type for m in samples} == set(MESSAGE_TYPES)
    for message in samples:
        data = json.loads(message.to_json())
        validator.validate(data)
        event = client.parse_event(data)
        assert type(event) is client.EVENT_TYPES[message.type]
        assert {name: _plain(getattr(event, name)) for name in _names(type(event))} == \
            {name: _plain(data[name]) for name in _names(type(message))}
    alert = client.parse_event(samples[2].to_dict())
    assert alert.thumbnail_jpeg() == b"hi"
    assert client.parse_event(samples[3].to_dict()).latency_p95 == 20.0


def test_events_are_frozen_and_keep_the_raw_message():
    data = messages.Error("x").to_dict()
    event = client.parse_event(data)
    assert event.raw == data
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.message = "y"


# -- subscriptions: checked in one place --------------------------------------------------------------------------
def test_subscribe_checks_types_when_constructed():
    assert Subscribe(["cam"], ("alert",)) == Subscribe(frozenset({"cam"}), frozenset({"alert"}))
    assert Subscribe().types is None and Subscribe().streams is None
    with pytest.raises(ValueError, match=r"unknown message types \['nope'\]"):
        Subscribe(None, frozenset({"alert", "nope"}))
    with pytest.raises(ValueError, match="list of strings"):
        Subscribe(None, "alert")  # a bare string is not a list of names
    with pytest.raises(ValueError, match="list of strings"):
        Subscribe([1], None)


def test_subscribe_parse():
    sub = Subscribe.parse('{"type": "subscribe", "streams": ["a"], "types": ["alert", "status"]}')
    assert sub == Subscribe(frozenset({"a"}), frozenset({"alert", "status"}))
    assert sub.wants({"type": "alert", "stream": "a"}) and not sub.wants({"type": "scores", "stream": "a"})
    assert not sub.wants({"type": "alert", "stream": "b"}) and sub.wants({"type": "status"})
    assert Subscribe.parse(b'{"type": "subscribe"}') == Subscribe()
    for text, problem in [('{"type": "subscribe", "types": ["nope"]}', "unknown message types"),
                          ('{"type": "subscribe", "types": "alert"}', "list of strings"),
                          ('{"type": "subscribe", "streams": [1]}', "list of strings"),
                          ('{"type": "subscribe", "extra": 1}', "unknown fields"),
                          ('[1, 2]', "expected"),
                          ('{"type": "subscribe"', "not JSON"),
                          (b'\xff\xfe{', "not JSON")]:
        with pytest.raises(ValueError, match=problem):
            Subscribe.parse(text)


def test_subscribe_parse_refuses_deep_nesting_and_large_messages():
    deep = "[" * 30_000 + "]" * 30_000  # under the size bound, but json.loads raises RecursionError on it
    assert len(deep) < messages.MAX_CLIENT_MESSAGE_BYTES
    with pytest.raises(ValueError, match="nested too deeply"):
        Subscribe.parse(deep)
    with pytest.raises(ValueError, match="nested too deeply"):
        Subscribe.parse('{"type": "subscribe", "streams": ' + "[" * 20_000 + "]" * 20_000 + "}")
    big = json.dumps({"type": "subscribe", "streams": ["x" * 100] * 1000})
    with pytest.raises(ValueError, match="too large"):
        Subscribe.parse(big)
    with pytest.raises(ValueError, match="too large"):
        Subscribe.parse(big.encode())
