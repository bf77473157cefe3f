"""MQTT publishing of availability, alerts and per-stream state (Frigate / Home Assistant conventions).

Topics (PREFIX is mqtt.topic_prefix, STREAM the stream's name with '/', '+', '#' replaced by '_'):

| topic | retained | payload |
| --- | --- | --- |
| PREFIX/available | yes | "online" on every (re)connect; "offline" on a clean close, and as the last will when the process dies |
| PREFIX/events | no | JSON per verdict change (type "alert") and per end of a track that had one (type "track_end") |
| PREFIX/STREAM/verdict | yes | "clear" / "suspicious" / "alert": the worst verdict among the stream's current faces |
| PREFIX/STREAM/confidence | no | the highest face confidence (0..1, 4 decimals), at most once a second per stream |
| PREFIX/STREAM/state | yes | the source's state (connecting, online, reconnecting, offline, ended) when it changes |

The bus calls the publisher on the event loop; it never touches the network there: paho's own thread
(loop_start) connects, reconnects (1 s doubling to 30 s) and writes. While disconnected, events (QoS 1) wait in
paho's queue, at most MAX_QUEUED of them, and are sent on reconnect; past that they are dropped (and counted in
`dropped`). Confidence readings (QoS 0) are dropped while disconnected. The retained topics are kept in memory
and published afresh on every connect, so they are right again as soon as the broker is back.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

log = logging.getLogger(__name__)

MAX_QUEUED = 500  # events kept for a broker that is away
CONFIDENCE_INTERVAL_S = 1.0
CLOSE_TIMEOUT_S = 2.0  # a clean close waits this long at most for "offline" to reach the broker
SEVERITY = {"unknown": 0, "clear": 0, "suspicious": 1, "alert": 2}  # a stream shows its worst face


def topic_part(name: str) -> str:
    """A stream name as one topic level: no level separators or wildcards, never empty."""
    return "".join("_" if c in "/+#" else c for c in name) or "_"


class MqttPublisher:
    def __init__(self, config, streams: list[str]):
        self.config, self.streams = config, list(streams)
        self.prefix = config.topic_prefix.rstrip("/")
        self.available = f"{self.prefix}/available"
        self.dropped = 0  # events refused because the queue for an absent broker was full
        self._lock = threading.Lock()  # the retained state below is written on the event loop, read on connect
        self._tracks: dict[str, dict[int, str]] = {s: {} for s in self.streams}  # stream -> track -> verdict
        self._retained: dict[str, str] = {f"{self._base(s)}/verdict": "clear" for s in self.streams}
        self._confidence_at: dict[str, float] = {}
        self._was_connected = self._closing = False
        self._failures = 0  # connection attempts that failed in a row (the first is logged as a warning)
        client = self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id)
        if config.username:
            client.username_pw_set(config.username, config.password)
        client.will_set(self.available, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(MAX_QUEUED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail

    def _base(self, stream: str) -> str:
        return f"{self.prefix}/{topic_part(stream)}"

    def start(self) -> None:
        """Connects in paho's thread: returns at once, whether or not the broker is there yet."""
        c = self.config
        self.client.connect_async(c.host, c.port, keepalive=30)
        self.client.loop_start()

    # -- paho's network thread ---------------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker %s:%s refused the connection: %s", self.config.host, self.config.port, reason_code)
            return
        log.info("MQTT connected to %s:%s", self.config.host, self.config.port)
        self._was_connected, self._failures = True, 0
        with self._lock:  # under the lock: a newer value published on the loop cannot be overtaken by this one
            client.publish(self.available, "online", qos=1, retain=True)
            for topic, payload in self._retained.items():
                client.publish(topic, payload, qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._was_connected and not self._closing:
            log.warning("MQTT disconnected from %s:%s (%s); reconnecting", self.config.host, self.config.port, reason_code)
        self._was_connected = False

    def _on_connect_fail(self, client, userdata) -> None:
        self._failures += 1
        log.log(logging.WARNING if self._failures == 1 else logging.DEBUG,
                "MQTT broker %s:%s not reachable; retrying in the background", self.config.host, self.config.port)

    # -- the bus sink, on the event loop: only queues work for paho's thread ------------------------------------
    def __call__(self, data: dict, text: str) -> None:
        kind = data["type"]
        if kind == "alert":
            self._track_verdict(data["stream"], data["track"], data["verdict"])
            self._event({"type": "alert", "stream": data["stream"], "track": data["track"], "verdict": data["verdict"],
                         "previous": data["previous"], "confidence": data["confidence"], "ts": data["ts"],
                         "box": data["box"]})
        elif kind == "track_end":
            if self._track_verdict(data["stream"], data["track"], None):  # only tracks that had an event
                self._event({"type": "track_end", "stream": data["stream"], "track": data["track"],
                             "verdict": data["verdict"], "previous": None, "confidence": data["confidence"],
                             "ts": data["ts"], "box": None, "frames": data["frames"]})
        elif kind == "status":
            self._retain(f"{self._base(data['stream'])}/state", data["state"])
        elif kind == "scores":
            self._confidence(data)

    def _track_verdict(self, stream: str, track: int, verdict: str | None) -> bool:
        """Record (or with None, forget) a track's verdict and retain the stream's worst; False if it was unknown."""
        tracks = self._tracks.setdefault(stream, {})
        known = track in tracks
        if verdict is None:
            tracks.pop(track, None)
        else:
            tracks[track] = verdict
        worst = max(tracks.values(), key=SEVERITY.__getitem__, default="clear")
        self._retain(f"{self._base(stream)}/verdict", "clear" if worst == "unknown" else worst)
        return known

    def _retain(self, topic: str, payload: str) -> None:
        with self._lock:
            if self._retained.get(topic) == payload:
                return
            self._retained[topic] = payload
            if self.client.is_connected():  # else: published by _on_connect when the broker is back
                self.client.publish(topic, payload, qos=1, retain=True)

    def _event(self, event: dict) -> None:
        info = self.client.publish(f"{self.prefix}/events", json.dumps(event, separators=(",", ":")), qos=1)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("MQTT broker away and %d events queued: %d dropped so far", MAX_QUEUED, self.dropped)

    def _confidence(self, data: dict) -> None:
        values = [f["confidence"] for f in data["faces"] if f["confidence"] is not None]
        now = time.monotonic()
        if not values or now - self._confidence_at.get(data["stream"], -1e9) < CONFIDENCE_INTERVAL_S:
            return
        self._confidence_at[data["stream"]] = now
        if self.client.is_connected():
            self.client.publish(f"{self._base(data['stream'])}/confidence", f"{max(values):.4f}", qos=0)

    def close(self) -> None:
        """Says "offline" (retained) if connected, then disconnects; blocks CLOSE_TIMEOUT_S at the most."""
        self._closing = True
        if self.client.is_connected():
            info = self.client.publish(self.available, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(CLOSE_TIMEOUT_S)
            except (RuntimeError, ValueError):  # the connection went meanwhile: the last will says it instead
                pass
        self.client.disconnect()
        # loop_stop joins paho's thread, which may sit in a connect attempt to an unreachable host: bounded wait
        stopper = threading.Thread(target=self.client.loop_stop, daemon=True, name="mqtt-close")
        stopper.start()
        stopper.join(CLOSE_TIMEOUT_S)
