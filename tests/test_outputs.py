"""Outputs: Prometheus metrics scraped over real HTTP from the running service, and MQTT through a real Mosquitto."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from streamdetect.bus import Bus
from streamdetect.config import MqttConfig, ServerConfig, ServiceConfig, SourceConfig
from streamdetect.messages import Alert, Subscribe
from streamdetect.outputs.metrics import Metrics
from streamdetect.outputs.mqtt import MqttPublisher
from streamdetect.scoring import ScoringConfig
from streamdetect.service import Service, sample_clip
from tests.support.mqtt_broker import MOSQUITTO, Broker, Watcher, free_port

needs_mosquitto = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed (apt-get install mosquitto)")
ROOT = Path(__file__).resolve().parents[1]


def live_config(**kw) -> ServiceConfig:
    """The bundled sample (one real face) as a live camera; the alert level 0 makes every face alert (this tests
    the outputs, not detection quality: the shipped model is untrained)."""
    return ServiceConfig(sources=(SourceConfig(str(sample_clip()), "cam", realtime=True, loop=True),), window=10,
                         scoring=ScoringConfig(alert=0.0, min_frames=3, min_dwell=1), **kw)


# -- Prometheus --------------------------------------------------------------------------------------------

def scrape(port: int, token: str | None = None) -> tuple[str, dict[tuple, float]]:
    """GET /metrics; returns the content type and {(sample name, sorted labels): value}."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        content_type, body = response.headers["Content-Type"], response.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    return content_type, samples


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def poll(port: int, token: str, ready, timeout: float = 30.0) -> dict:
    """Scrape (off the event loop, which serves the request) until ready(samples) holds."""
    deadline = time.monotonic() + timeout
    while True:
        _, samples = await asyncio.to_thread(scrape, port, token)
        if ready(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never got ready: {sorted(k for k in samples if 'bucket' not in k[0])}")
        await asyncio.sleep(0.3)


def test_metrics_endpoint_of_the_running_service(engine, detector):
    token = "m3trics"

    async def scenario():
        service = Service(live_config(server=ServerConfig(port=0, token=token)), engine, detector)
        port = await service.start()
        try:
            refused = []
            for bad in (None, "wrong"):
                with pytest.raises(urllib.error.HTTPError) as err:
                    await asyncio.to_thread(scrape, port, bad)
                refused.append(err.value.code)
            content_type, _ = await asyncio.to_thread(scrape, port, token)
            # processed fps is a rolling rate: the first status may come before a frame was processed
            busy = await poll(port, token, lambda s: (value(s, "streamdetect_processed_frames_per_second", stream="cam") or 0) > 0
                              and (value(s, "streamdetect_model_call_duration_seconds_count", call="encode") or 0) > 0
                              and (value(s, "streamdetect_alerts_total", stream="cam", verdict="alert") or 0) > 0)
            idle = value(busy, "streamdetect_subscribers")
            async with connect(f"ws://127.0.0.1:{port}/ws?token={token}") as ws:
                await ws.recv()  # hello: subscribed by now
                watching = await poll(port, token, lambda s: value(s, "streamdetect_subscribers") == 1, 10)
            gone = await poll(port, token, lambda s: value(s, "streamdetect_subscribers") == 0, 10)
        finally:
            await service.stop()
        return refused, content_type, busy, idle, watching, gone

    refused, content_type, s, idle, watching, gone = asyncio.run(scenario())
    assert refused == [401, 401]
    assert content_type == CONTENT_TYPE_LATEST and content_type.startswith("text/plain; version=")  # Prometheus text
    assert value(s, "streamdetect_input_frames_per_second", stream="cam") > 0
    assert value(s, "streamdetect_model_call_duration_seconds_count", call="step") > 0
    assert 0 < value(s, "streamdetect_model_call_duration_seconds_sum", call="encode") < 60
    assert value(s, "streamdetect_frame_latency_seconds_count", stream="cam") > 0
    assert value(s, "streamdetect_frame_latency_seconds_bucket", stream="cam", le="+Inf") == \
        value(s, "streamdetect_frame_latency_seconds_count", stream="cam")
    assert value(s, "streamdetect_source_state", stream="cam", state="online") == 1
    assert value(s, "streamdetect_source_state", stream="cam", state="offline") == 0
    assert value(s, "streamdetect_tracked_faces", stream="cam") is not None
    assert value(s, "streamdetect_dropped_frames_total", stream="cam") >= 0
    assert value(s, "streamdetect_corrupt_packets_total", stream="cam") == 0
    assert value(s, "streamdetect_messages_total", type="status") > 0
    assert value(s, "streamdetect_subscriber_dropped_messages_total") == 0
    assert (idle, value(watching, "streamdetect_subscribers"), value(gone, "streamdetect_subscribers")) == (0, 1, 0)


def test_subscriber_drops_are_kept_after_clients_leave_and_registries_never_clash():
    """A real Bus with tiny client queues; two Metrics in one process, each with its own registry."""

    def samples(metrics: Metrics) -> dict:
        body, _ = metrics.render()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(body.decode()) for s in f.samples}

    async def scenario():
        bus = Bus(asyncio.get_running_loop(), client_queue_size=4)
        metrics, other = Metrics(bus), Metrics(bus)  # registering the same names twice would raise
        bus.add_sink(metrics)
        steps = []
        slow = bus.subscribe(Subscribe())
        for i in range(10):  # nobody reads: 6 of 10 are dropped
            bus.publish(Alert("cam", i, "alert", "suspicious", 0.9, [0, 0, 1, 1], None))
        await asyncio.sleep(0.1)  # delivered on this loop
        steps.append(samples(metrics))
        bus.unsubscribe(slow)
        late = bus.subscribe(Subscribe())  # replay of the 10 recent alerts into 4 places: 6 more dropped
        bus.publish(Alert("cam", 99, "alert", "suspicious", 0.9, [0, 0, 1, 1], None))  # and one more
        await asyncio.sleep(0.1)
        steps.append(samples(metrics))
        bus.unsubscribe(late)
        steps.append(samples(metrics))
        return steps, samples(other)

    steps, other = asyncio.run(scenario())
    drops = [value(s, "streamdetect_subscriber_dropped_messages_total") for s in steps]
    assert drops == [6, 13, 13]  # clients that left keep their drops in the total
    assert [value(s, "streamdetect_subscribers") for s in steps] == [1, 1, 0]
    assert value(steps[-1], "streamdetect_alerts_total", stream="cam", verdict="alert") == 11
    assert value(other, "streamdetect_alerts_total", stream="cam", verdict="alert") is None  # not its sink


def test_wrapped_engine_is_the_engine(engine):
    metrics = Metrics()
    wrapped = metrics.wrap_engine(engine)
    assert (wrapped.card, wrapped.name, wrapped.device, wrapped.on_gpu, repr(wrapped)) == \
        (engine.card, engine.name, engine.device, engine.on_gpu, repr(engine))
    import numpy as np

    s = engine.card.config.input_size
    crops = np.zeros((2, s, s, 3), np.uint8)
    np.testing.assert_array_equal(wrapped.encode(crops), engine.encode(crops))
    p, (h, c) = wrapped.step(engine.encode(crops))
    assert p.shape == (2,) and h.shape == c.shape == (2, engine.card.config.hidden_size)
    assert wrapped.init_state(3)[0].shape == (3, engine.card.config.hidden_size)
    body = metrics.render()[0].decode()
    assert 'streamdetect_model_call_duration_seconds_count{call="encode"} 1.0' in body
    assert 'streamdetect_model_call_duration_seconds_count{call="step"} 1.0' in body


# -- MQTT ----------------------------------------------------------------------------------------------------

def mqtt_config(port: int, prefix: str, client_id: str) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=port, topic_prefix=prefix, client_id=client_id)


def is_event(prefix: str, kind: str = "alert", **fields):
    def match(m) -> bool:
        if m.topic != f"{prefix}/events":
            return False
        event = json.loads(m.payload)
        return event["type"] == kind and all(event.get(k) == v for k, v in fields.items())
    return match


def is_(topic: str, payload: str, retain: bool | None = None):
    return lambda m: m.topic == topic and m.payload == payload and (retain is None or m.retain == retain)


def retained_now(port: int, p: str) -> dict[str, str]:
    with Watcher(port, f"{p}/#") as late:
        got = [late.wait_for(lambda m: m.topic == t, 5) for t in (f"{p}/available", f"{p}/cam/verdict", f"{p}/cam/state")]
    return {m.topic: m.payload for m in got if m.retain}


@needs_mosquitto
def test_service_publishes_availability_alerts_and_state(engine, detector, tmp_path):
    p = "sd-test"
    with Broker(tmp_path / "broker") as broker, Watcher(broker.port, f"{p}/#") as watcher:
        async def scenario():
            service = Service(live_config(server=ServerConfig(port=0), mqtt=mqtt_config(broker.port, p, "sd-a")),
                              engine, detector)
            await service.start()
            try:
                await asyncio.to_thread(watcher.wait_for, is_(f"{p}/available", "online"), 15)
                alert = await asyncio.to_thread(watcher.wait_for, is_event(p, stream="cam", verdict="alert"), 30)
                await asyncio.to_thread(watcher.wait_for, is_(f"{p}/cam/verdict", "alert"), 10)
                await asyncio.to_thread(watcher.wait_for, is_(f"{p}/cam/state", "online"), 10)
                await asyncio.to_thread(watcher.wait_for, lambda m: m.topic == f"{p}/cam/confidence", 10)
                await asyncio.sleep(4)  # confidence: scores come at 10 Hz, readings at most once a second
                retained = await asyncio.to_thread(retained_now, broker.port, p)  # what a newcomer is told
            finally:
                await service.stop()
            return alert, retained

        alert, retained = asyncio.run(scenario())
        offline = watcher.wait_for(is_(f"{p}/available", "offline"), 10)
        with Watcher(broker.port, f"{p}/available") as after:
            after_stop = after.wait_for(lambda m: True, 5)

    event = json.loads(alert.payload)
    assert set(event) == {"type", "stream", "track", "verdict", "previous", "confidence", "ts", "box"}
    assert event["previous"] in ("unknown", "clear", "suspicious") and 0 <= event["confidence"] <= 1
    assert len(event["box"]) == 4 and abs(event["ts"] - alert.at) < 5 and len(alert.payload) < 400  # no thumbnail
    assert retained == {f"{p}/available": "online", f"{p}/cam/verdict": "alert", f"{p}/cam/state": "online"}
    readings = watcher.on(f"{p}/cam/confidence")
    assert all(0 <= float(m.payload) <= 1 and not m.retain for m in readings)
    span = readings[-1].at - readings[0].at
    assert 2 <= len(readings) <= span / 0.9 + 1  # at most ~1 Hz
    assert offline.at >= alert.at and (after_stop.payload, after_stop.retain) == ("offline", True)


@needs_mosquitto
def test_publisher_verdicts_track_ends_and_topic_names(tmp_path):
    """The publisher alone, fed the bus's messages: the stream shows its worst face; ends close events."""
    p = "sd-unit"
    with Broker(tmp_path / "broker") as broker, Watcher(broker.port, f"{p}/#") as watcher:
        pub = MqttPublisher(mqtt_config(broker.port, p, "sd-unit"), ["lobby/door"])
        pub.start()
        try:
            base = f"{p}/lobby_door"
            watcher.wait_for(is_(f"{p}/available", "online"))
            watcher.wait_for(is_(f"{base}/verdict", "clear"))  # no face yet: a stale retained alert is cleared

            def alert(track, verdict, previous):
                return Alert("lobby/door", track, verdict, previous, 0.8, [1, 2, 3, 4], 1.0, "JPEG" * 1000).to_dict()

            for data in (alert(1, "suspicious", "unknown"), alert(2, "alert", "unknown"),
                         {"type": "track_end", "stream": "lobby/door", "track": 2, "frames": 40, "confidence": 0.8,
                          "verdict": "alert", "ts": 1.0},
                         {"type": "track_end", "stream": "lobby/door", "track": 7, "frames": 40, "confidence": 0.1,
                          "verdict": "clear", "ts": 1.0},  # a track without events: no end event either
                         {"type": "track_end", "stream": "lobby/door", "track": 1, "frames": 40, "confidence": 0.5,
                          "verdict": "suspicious", "ts": 1.0}):
                pub(data, "")
            for state in ("connecting", "online", "online", "online", "reconnecting"):
                pub({"type": "status", "stream": "lobby/door", "state": state}, "")
            watcher.wait_for(is_event(p, "track_end", track=1))
            watcher.wait_for(is_(f"{base}/state", "reconnecting"))
        finally:
            pub.close()
    verdicts = [m.payload for m in watcher.on(f"{base}/verdict")]
    assert verdicts == ["clear", "suspicious", "alert", "suspicious", "clear"]
    events = [json.loads(m.payload) for m in watcher.on(f"{p}/events")]
    assert [(e["type"], e["track"]) for e in events] == [("alert", 1), ("alert", 2), ("track_end", 2), ("track_end", 1)]
    assert events[2] == {"type": "track_end", "stream": "lobby/door", "track": 2, "verdict": "alert", "previous": None,
                         "confidence": 0.8, "ts": 1.0, "box": None, "frames": 40}
    assert all("thumbnail" not in e for e in events)
    assert [m.payload for m in watcher.on(f"{base}/state")] == ["connecting", "online", "reconnecting"]
    assert watcher.on(f"{p}/available")[-1].payload == "offline"


VICTIM = """
import sys, time
from streamdetect.config import MqttConfig
from streamdetect.outputs.mqtt import MqttPublisher
pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), topic_prefix=sys.argv[2], client_id="victim"), ["cam"])
pub.start()
while not pub.client.is_connected():
    time.sleep(0.05)
print("connected", flush=True)
time.sleep(300)
"""


@needs_mosquitto
def test_last_will_says_offline_when_the_process_is_killed(tmp_path):
    p = "sd-will"
    with Broker(tmp_path / "broker") as broker, Watcher(broker.port, f"{p}/available") as watcher:
        victim = subprocess.Popen([sys.executable, "-c", VICTIM, str(broker.port), p], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert victim.stdout.readline().strip() == "connected"
            watcher.wait_for(is_(f"{p}/available", "online"), 10)
            os.kill(victim.pid, signal.SIGKILL)  # no DISCONNECT, no "offline" of its own: only the will can say it
            killed_at = time.time()
            offline = watcher.wait_for(is_(f"{p}/available", "offline"), 10)
        finally:
            if victim.poll() is None:
                victim.kill()
            victim.wait(10)
            victim.stdout.close()
        with Watcher(broker.port, f"{p}/available") as later:
            retained = later.wait_for(lambda m: True, 5)
    assert victim.returncode == -signal.SIGKILL
    assert offline.at - killed_at < 5
    assert (retained.payload, retained.retain) == ("offline", True)


@needs_mosquitto
def test_broker_down_at_start_then_up(engine, detector, tmp_path):
    """The service runs without its broker; when the broker appears the publisher connects by itself and delivers
    what was queued meanwhile. A persistent watcher session (kept by the broker across its restart) receives
    everything published while it was away, so nothing depends on who reconnects first."""
    p, port = "sd-late", free_port()
    broker = Broker(tmp_path / "broker", port, persistent=True)
    with broker:
        Watcher(port, f"{p}/#", client_id="sd-late-watcher", clean=False).start().stop()  # leaves its session
    timings: list[float] = []

    def timed(sink):
        def call(data, text):
            start = time.perf_counter()
            sink(data, text)
            timings.append(time.perf_counter() - start)
        return call

    async def scenario():
        service = Service(live_config(server=ServerConfig(port=0), mqtt=mqtt_config(port, p, "sd-late")), engine, detector)
        started = time.monotonic()
        http_port = await service.start()
        start_s = time.monotonic() - started
        bus = service.bus
        bus.sinks[bus.sinks.index(service.mqtt)] = timed(service.mqtt)
        try:
            async with connect(f"ws://127.0.0.1:{http_port}/ws?types=alert,scores") as ws:
                await ws.recv()  # hello
                down = []
                # an alert, and the scores flowing on, while the broker is away
                while not any(m["type"] == "alert" for m in down) or sum(m["type"] == "scores" for m in down) < 10:
                    down.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
                await asyncio.sleep(2)
                health = json.loads(await asyncio.to_thread(
                    lambda: urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=5).read()))
                await asyncio.to_thread(broker.start)
                broker_up = time.time()
                deadline = time.monotonic() + 45
                while not service.mqtt.client.is_connected() and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                connected = service.mqtt.client.is_connected()
                await asyncio.sleep(1)  # queued events on their way
                up = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(5)]  # still serving
        finally:
            await service.stop()
        return start_s, down, health, broker_up, connected, up

    try:
        start_s, down, health, broker_up, connected, up = asyncio.run(scenario())
        with Watcher(port, f"{p}/#", client_id="sd-late-watcher", clean=False) as watcher:
            online = watcher.wait_for(is_(f"{p}/available", "online"), 10)
            watcher.wait_for(is_(f"{p}/available", "offline"), 10)
            events = [json.loads(m.payload) for m in watcher.on(f"{p}/events")]
    finally:
        broker.stop()
    # Wide bounds that only a blocking connect to the absent broker (seconds each) could break, not a slow machine.
    assert start_s < 30 and health["status"] == "ok" and connected
    assert len(up) == 5
    print(f"sink calls: {len(timings)}, slowest {max(timings) * 1e3:.2f} ms")
    assert max(timings) < 1.0, sorted(timings)[-5:]  # the sink never waited for the absent broker
    assert online.payload == "online"
    alerts_while_down = [e for e in events if e["type"] == "alert" and e["ts"] < broker_up]
    assert alerts_while_down and alerts_while_down[0]["stream"] == "cam"
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)  # queued ones first, in order


@needs_mosquitto
def test_events_reach_a_subscriber_across_a_broker_restart(engine, detector, tmp_path):
    """The broker goes away mid-run and comes back: every alert the service raised meanwhile reaches a subscriber
    whose session the broker kept (mosquitto persistence), none is lost and none is counted as dropped."""
    p, port = "sd-restart", free_port()
    broker = Broker(tmp_path / "broker", port, persistent=True).start()
    watcher = Watcher(port, f"{p}/events", client_id="sd-restart-watcher", clean=False).start()

    async def scenario():
        service = Service(live_config(server=ServerConfig(port=0), mqtt=mqtt_config(port, p, "sd-restart")),
                          engine, detector)
        http_port = await service.start()
        seen = []
        try:
            async with connect(f"ws://127.0.0.1:{http_port}/ws?types=alert") as ws:
                await ws.recv()  # hello
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))  # an alert while the broker is up
                await asyncio.to_thread(watcher.wait_for, is_event(p), 20)
                await asyncio.to_thread(watcher.stop)  # the session stays on the broker
                await asyncio.to_thread(broker.stop)  # the broker goes away mid-run ...
                down_at = time.time()
                while not any(m["ts"] > down_at for m in seen):  # ... and the service raises alerts meanwhile
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
                await asyncio.to_thread(broker.start)  # ... and comes back
                deadline = time.monotonic() + 45
                while not service.mqtt.client.is_connected() and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2)  # the queued events on their way
        finally:
            await service.stop()
        return seen, service.mqtt.dropped

    try:
        seen, dropped = asyncio.run(scenario())
        with Watcher(port, f"{p}/events", client_id="sd-restart-watcher", clean=False) as again:
            want = {(m["track"], m["ts"]) for m in seen}
            again.wait_for(lambda m: want <= {(e["track"], e["ts"]) for e in
                                              (json.loads(x.payload) for x in again.on(f"{p}/events") + watcher.on(f"{p}/events"))
                                              if e["type"] == "alert"}, 30)
    finally:
        watcher.stop()
        broker.stop()
    assert dropped == 0
