"""The clients against the real live service: the client library, `streamdetect watch`, `streamdetect guard`, and
the in-process PushSource example. Real service (real MediaPipe, real ONNX Runtime), real sockets, real
subprocesses, a real HTTP receiver for the webhook. The random model is forced to alert with alert=0.0.

No assertion judges speed (the runner may be a loaded 2-core machine): each step waits for the behaviour it checks,
with generous timeouts, and orderings are checked with the server's own timestamps. Subprocesses run in their own
process group and are killed with it whatever happens."""

import asyncio
import contextlib
import importlib.util
import io
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from streamdetect.clients import library as client_module
from streamdetect.clients.library import (AlertEvent, AuthError, ConnectionEvent, ConnectionFailed, ErrorEvent, FaceEvent,
                                 HelloEvent, ScoresEvent, StatusEvent, StreamDetectClient, UnknownEvent, parse_event,
                                 service_url)
from streamdetect.config import ServerConfig, ServiceConfig, SourceConfig
from streamdetect.clients.guard import Debouncer, GuardOptions, run_guard
from streamdetect.scoring import ScoringConfig
from streamdetect.service import Service, sample_clip
from tests.conftest import make_clip
from tests.support import processes
from tests.support.clips import sample_excerpt

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = jsonschema.Draft202012Validator(json.loads((files("streamdetect.schema") / "messages.v1.json").read_text()))
ALERT_AT_ONCE = ScoringConfig(alert=0.0, min_frames=1, min_dwell=1)  # any usable face is "alert" on its first frame


def face_source(**kw) -> SourceConfig:
    """The bundled sample (one real face, always present), played as a live call."""
    return SourceConfig(str(sample_clip()), "call", realtime=True, loop=True, **kw)


def config(sources, port=0, token=None) -> ServiceConfig:
    return ServiceConfig(sources=tuple(sources), window=10, scoring=ALERT_AT_ONCE, server=ServerConfig(port=port, token=token))


async def take(events, until, timeout: float) -> list:
    """Events from an async iterator until `until(event)` is true (that one included) or the timeout."""
    out, deadline = [], time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = await asyncio.wait_for(events.__anext__(), left)
        except asyncio.TimeoutError:
            break
        out.append(event)
        if until(event):
            break
    return out


def seen_all(*kinds):
    """An `until` for take(): true once an event of each kind was seen (scores only count with a face)."""
    seen = set()

    def until(event) -> bool:
        if not isinstance(event, ScoresEvent) or event.faces:
            seen.add(type(event))
        return set(kinds) <= seen

    return until


async def drain(events) -> None:
    async for _ in events:
        pass


def status_after_error():
    """An `until` for take(): true at the first status the server made after an error it sent."""
    errors = []

    def until(event) -> bool:
        if isinstance(event, ErrorEvent):
            errors.append(event)
        return isinstance(event, StatusEvent) and any(event.ts > e.ts for e in errors)

    return until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the client library ---------------------------------------------------------------------------------------
def test_client_yields_typed_valid_events_and_reconnects(engine, detector):
    async def scenario():
        service = Service(config([face_source()]), engine, detector)
        port = await service.start()
        client = StreamDetectClient(f"ws://127.0.0.1:{port}", backoff=(0.1, 0.5))
        events = client.__aiter__()
        # (the timeouts only bound a failure: each take() ends as soon as it has seen what it waits for)
        first = await take(events, seen_all(HelloEvent, ScoresEvent, AlertEvent, StatusEvent), 60)
        await service.stop()  # the server goes away ...
        retrying = lambda e: isinstance(e, ConnectionEvent) and "cannot connect" in e.detail  # noqa: E731 (a failed retry)
        gone = await take(events, retrying, 60)
        service = Service(config([face_source()], port=port), engine, detector)  # ... and comes back on its port
        await service.start()
        back = await take(events, lambda e: isinstance(e, HelloEvent), 60)
        await client.subscribe(types=["status"])  # a subscription change on the live connection
        # A change the server refuses (unknown type) is answered with an error, which it sends after it took the
        # first one; then the client's own filter is set back (it is what a reconnection would ask for).
        await client.subscribe(types=["status", "hologram"])
        await client.subscribe(types=["status"])
        later = await take(events, status_after_error(), 30)
        await client.close()
        await service.stop()
        return first, gone, back, later

    first, gone, back, later = asyncio.run(scenario())
    assert isinstance(first[0], ConnectionEvent) and first[0].state == "connected"
    hello = first[1]
    assert isinstance(hello, HelloEvent) and hello.streams == ("call",) and hello.model["window"] == 10
    messages = [e for e in first + back if not isinstance(e, ConnectionEvent)]
    assert not any(isinstance(e, UnknownEvent) and e.problem for e in messages)
    for e in messages:
        VALIDATOR.validate(e.raw)  # every typed event was a valid message
    faces = [f for e in messages if isinstance(e, ScoresEvent) for f in e.faces]
    assert faces and all(isinstance(f, FaceEvent) and isinstance(f.box, tuple) for f in faces)
    alert = next(e for e in messages if isinstance(e, AlertEvent))
    assert alert.verdict == "alert" and alert.stream == "call" and alert.thumbnail_jpeg()[:2] == b"\xff\xd8"
    status = next(e for e in messages if isinstance(e, StatusEvent))
    assert status.stream == "call" and status.state in ("connecting", "online")
    lost = [e for e in gone if isinstance(e, ConnectionEvent)]
    assert {e.state for e in lost} == {"disconnected"} and "closed the connection" in lost[0].detail
    assert [e.state for e in back if isinstance(e, ConnectionEvent)][-1] == "connected"
    assert isinstance(back[-1], HelloEvent)
    (refused,) = [e for e in later if isinstance(e, ErrorEvent)]
    assert "hologram" in refused.message
    # Messages queued before the change may still arrive; anything the server made after it took the change (and
    # so before it answered the refused one) is a status. (ts: the server's clock.)
    assert all(e.ts < refused.ts for e in later if not isinstance(e, (StatusEvent, ErrorEvent))), later
    assert isinstance(later[-1], StatusEvent) and later[-1].ts > refused.ts


def test_client_auth_and_unreachable(engine, detector, tmp_path, monkeypatch):
    clip = SourceConfig(str(make_clip(tmp_path / "c.mp4", seconds=1)), "c", realtime=True, loop=True)
    attempts = []
    real_connect = client_module.connect
    monkeypatch.setattr(client_module, "connect", lambda url, **kw: attempts.append(url) or real_connect(url, **kw))

    async def scenario():
        service = Service(config([clip], token="s3cret"), engine, detector)
        port = await service.start()
        url = f"ws://127.0.0.1:{port}"
        try:
            for token in ("wrong", None):
                attempts.clear()
                with pytest.raises(AuthError, match="HTTP 401") as refused:
                    async with StreamDetectClient(url, token=token, reconnect=True, backoff=(0.05, 0.1)) as c:
                        await asyncio.wait_for(drain(c), 60)  # a retry loop would time out here
                assert len(attempts) == 1  # refused at once, never retried (even with reconnect=True)
            assert "token" in str(refused.value)
            async with StreamDetectClient(url, token="s3cret") as c:
                events = await take(c.__aiter__(), lambda e: isinstance(e, HelloEvent), 60)
            assert isinstance(events[-1], HelloEvent)
        finally:
            await service.stop()
        dead = f"ws://127.0.0.1:{free_port()}"
        with pytest.raises(ConnectionFailed, match=f"cannot connect to {dead}/ws"):
            async with StreamDetectClient(dead, reconnect=False):
                pass

    asyncio.run(scenario())


def test_parsing_ignores_unknown_fields_and_types_and_works_without_jsonschema(monkeypatch):
    scores = {"v": 1, "type": "scores", "stream": "s", "frame": 3, "pts": 0.1, "latency_ms": 12.5, "ts": 1.0,
              "future_field": 1, "faces": [{"track": 1, "box": [0, 0, 5, 5], "p_fake": 0.2, "confidence": 0.3,
                                            "verdict": "clear", "frames": 4, "flags": [], "also_new": True}]}
    for validator in (client_module._validator, lambda kind: None):  # with jsonschema, then the required-keys fallback
        monkeypatch.setattr(client_module, "_validator", validator)
        event = parse_event(scores)
        assert isinstance(event, ScoresEvent) and event.faces[0].confidence == 0.3 and event.raw is scores
        assert isinstance(parse_event({"v": 1, "type": "hologram", "ts": 1}), UnknownEvent)
        broken = parse_event({**scores, "faces": [{"track": 1}]})
        assert isinstance(broken, UnknownEvent) and broken.type_name == "scores" and broken.problem
    assert service_url("ws://h:1", ["a", "b"], ["scores"]) == "ws://h:1/ws?streams=a,b&types=scores"
    assert service_url("http://h:1/?token=t") == "ws://h:1/ws?token=t"


# -- streamdetect watch -------------------------------------------------------------------------------------------
async def run_cli(module: str, *args: str, until=None, timeout: float = 120):
    """Run `python -m MODULE ARGS` in its own process group until it exits, or until `until(stdout so far)` is true
    (then SIGTERM). Past `timeout` it is stopped, and it is killed with its group whatever happens.
    Returns (rc, stdout, stderr)."""
    out = []
    async with processes.async_child(sys.executable, "-m", module, *args, cwd=ROOT,
                                     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) as proc:
        errors = asyncio.create_task(proc.stderr.read())

        async def read_to_exit():
            async for line in proc.stdout:
                out.append(line.decode())
                if until is not None and proc.returncode is None and until("".join(out)):
                    with contextlib.suppress(ProcessLookupError):
                        proc.terminate()  # seen enough
            await proc.wait()  # the end of its output is not yet its exit

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(read_to_exit(), timeout)
    return proc.returncode, "".join(out), (await errors).decode()


def json_lines_show_everything(text: str) -> bool:
    """A `watch --json` output with hello, status, alert and scores with a face (the first line may be partial)."""
    lines = [json.loads(line) for line in text.splitlines()]
    return ({"hello", "scores", "status", "alert"} <= {m["type"] for m in lines}
            and any(m["type"] == "scores" and m["faces"] for m in lines))


def table_shows_everything(text: str) -> bool:
    """At least two refreshes of `watch`'s table, showing the stream online with an alerting face."""
    return text.count("streamdetect watch ws://") >= 2 and all(w in text for w in ("call", "online", "face #", "alert"))


def test_watch_json_table_and_errors(engine, detector):
    async def scenario():
        service = Service(config([face_source()], token="s3cret"), engine, detector)
        port = await service.start()
        url = f"ws://127.0.0.1:{port}"
        try:
            return await asyncio.gather(
                run_cli("streamdetect.clients.watch", url, "--json", "--token", "s3cret", until=json_lines_show_everything),
                run_cli("streamdetect.clients.watch", url, "--token", "s3cret", "--stream", "call",
                        until=table_shows_everything),
                run_cli("streamdetect.clients.watch", url, "--json", "--token", "nope"),
                run_cli("streamdetect.clients.watch", f"ws://127.0.0.1:{free_port()}", "--json"))
        finally:
            await service.stop()

    (_, json_out, _), (_, table, _), (rc_token, _, err_token), (rc_dead, _, err_dead) = asyncio.run(scenario())
    lines = [json.loads(line) for line in json_out.splitlines()]
    for message in lines:
        VALIDATOR.validate(message)
    assert lines[0]["type"] == "hello" and json_lines_show_everything(json_out), json_out[-2000:]
    # not a terminal: plain blocks, one per second, no escape codes
    assert "\x1b" not in table and table_shows_everything(table), table[-2000:]
    assert rc_token == 2 and "token" in err_token and len(err_token.strip().splitlines()) == 1
    assert rc_dead == 2 and "cannot connect to ws://127.0.0.1:" in err_dead and len(err_dead.strip().splitlines()) == 1


# -- streamdetect guard -------------------------------------------------------------------------------------------
class Receiver:
    """A webhook receiver on loopback that answers 500 to the first POST and 200 afterwards."""

    def __init__(self):
        self.requests: list[tuple[int, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = 500 if not receiver.requests else 200
                receiver.requests.append((code, body))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_guard_posts_one_alert_per_face_and_retries_the_webhook(engine, detector, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # the webhook goes to loopback even behind a proxy
    receiver = Receiver()

    async def scenario():
        service = Service(config([face_source()]), engine, detector)
        port = await service.start()
        stop, out = asyncio.Event(), io.StringIO()
        options = GuardOptions(url=f"ws://127.0.0.1:{port}", webhook=receiver.url, notify=False)
        guard_task = asyncio.create_task(run_guard(options, stop=stop, out=out))
        alerting = {}  # what the server said meanwhile, seen by an independent client

        def counted(e) -> bool:  # until the face has kept alerting in many messages
            for f in getattr(e, "faces", ()):
                if f.verdict == "alert":
                    alerting[(e.stream, f.track)] = alerting.get((e.stream, f.track), 0) + 1
            return max(alerting.values(), default=0) >= 10

        async with StreamDetectClient(f"ws://127.0.0.1:{port}", types=["scores"]) as watcher:
            await take(watcher.__aiter__(), counted, 60)
        # A guard joining late gets the service's replay of recent alerts: history, not news. The face still in
        # the call is alerted once, from its live scores, with the replayed thumbnail.
        late_stop, late_out = asyncio.Event(), io.StringIO()
        late_task = asyncio.create_task(run_guard(GuardOptions(url=f"ws://127.0.0.1:{port}", notify=False),
                                                  stop=late_stop, out=late_out))
        for _ in range(600):  # until the late guard has alerted (at most 60 s)
            if " ALERT " in late_out.getvalue() or late_task.done():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # and a little longer: a repeat alert would come now
        stop.set()
        late_stop.set()
        guard, late = await asyncio.wait_for(asyncio.gather(guard_task, late_task), 60)
        await service.stop()
        receiver.server.shutdown()
        return guard, late, out.getvalue(), alerting

    guard, late, out, alerting = asyncio.run(scenario())
    assert alerting and max(alerting.values()) >= 10  # the face kept alerting in many messages ...
    delivered = [body for code, body in receiver.requests if code == 200]
    keys = [(b["stream"], b["track"]) for b in delivered]
    assert sorted(keys) == sorted(set(keys)) and set(keys) >= set(alerting)  # ... but was posted exactly once
    assert receiver.requests[0][0] == 500 and receiver.requests[0][1] == receiver.requests[1][1]  # 500, then retried
    assert len(receiver.requests) == len(delivered) + 1
    body = delivered[0]
    assert set(body) == {"stream", "track", "verdict", "confidence", "ts", "thumbnail"} and body["verdict"] == "alert"
    assert any(b["thumbnail"] for b in delivered)
    assert len(guard.sent) == len(keys) and out.count(" ALERT ") == len(keys) and "stream=call" in out
    late_keys = [(a.stream, a.track) for a in late.sent]
    assert late_keys and len(late_keys) == len(set(late_keys)) and set(late_keys) <= set(keys)
    assert all(a.ts >= late.connected_at and a.thumbnail for a in late.sent)


def test_guard_runs_its_own_service_on_a_source_until_it_ends(engine, detector, tmp_path):
    clip = sample_excerpt(tmp_path / "call.mp4", frames=45)  # the sample's first 1.5 s: a short recorded call
    (tmp_path / "guard.yaml").write_text("window: 10\nscoring: {alert: 0.0, min_frames: 1, min_dwell: 1}\n")
    options = GuardOptions(source=str(clip), config=str(tmp_path / "guard.yaml"), notify=False)
    out = io.StringIO()
    # It ends with the recording by itself: a guard that kept running would hit this (generous) timeout and fail.
    guard = asyncio.run(asyncio.wait_for(run_guard(options, engine, detector, out=out), 120))
    assert [(a.stream, a.verdict) for a in guard.sent][:1] == [("call", "alert")]
    assert len({(a.stream, a.track) for a in guard.sent}) == len(guard.sent)


def test_debouncer_realerts_only_after_clearing_and_cooldown():
    d, key = Debouncer(cooldown=10), ("call", 1)
    assert d.check(key, True, 0) and not d.check(key, True, 1)  # once
    assert not d.check(key, False, 2) and not d.check(key, True, 5)  # cleared, back within the cooldown: quiet
    assert not d.check(key, False, 6) and d.check(key, True, 12)  # cleared and back after the cooldown
    assert not d.check(key, True, 30)  # still alerting: no repeat
    d.forget(key)
    assert d.check(key, True, 31)


# -- in-process WebRTC example (PushSource) -----------------------------------------------------------------------
def test_inprocess_webrtc_example_scores_pushed_frames(engine, detector):
    spec = importlib.util.spec_from_file_location("inprocess_webrtc", ROOT / "examples" / "inprocess_webrtc.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    messages = []

    async def first_seconds(frames, seconds):  # 1.5 s of the sample, paced like a WebRTC track
        async for rgb, pts in frames:
            if pts is not None and pts > seconds:
                return
            yield rgb, pts

    async def scenario():
        cfg = ServiceConfig(window=10, scoring=ALERT_AT_ONCE)
        pipeline, source = example.start_detection(messages.append, engine, detector, name="peer", config=cfg)
        await example.feed(first_seconds(example.pyav_frames(str(sample_clip())), 1.5), source)
        assert await asyncio.to_thread(pipeline.wait, 60)  # end() finishes the stream and the pipeline
        pipeline.stop()
        return source

    source = asyncio.run(scenario())
    data = [m.to_dict() for m in messages]
    for message in data:
        VALIDATOR.validate(message)
    assert source.decoded >= 40 and source.state.value == "ended"
    assert not source.push(np.zeros((4, 4, 3), np.uint8))  # an ended track takes no more frames
    assert any(m["type"] == "scores" and m["stream"] == "peer" and m["faces"] for m in data)
    assert any(m["type"] == "alert" and m["stream"] == "peer" for m in data)
    assert any(m["type"] == "track_end" for m in data) and data[-1]["type"] == "status" and data[-1]["state"] == "ended"
