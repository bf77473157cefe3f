"""Prometheus metrics for the live service, served as text at GET /metrics.

Everything is read from what the service already publishes (a Bus sink sees every message), plus the model-call
durations (the engine is wrapped) and the subscriber queues (read from the bus when scraped). Each Metrics has
its own registry, so several services in one process never clash.

| metric | type | labels | from |
| --- | --- | --- | --- |
| streamdetect_input_frames_per_second | gauge | stream | status: frames decoded per second |
| streamdetect_processed_frames_per_second | gauge | stream | status: frames through the model per second |
| streamdetect_dropped_frames_total | counter | stream | status: frames dropped before processing |
| streamdetect_corrupt_packets_total | counter | stream | status: packets the decoder rejected |
| streamdetect_tracked_faces | gauge | stream | status: faces tracked now |
| streamdetect_source_state | gauge | stream, state | status: 1 for the source's state, 0 for the others |
| streamdetect_frame_latency_seconds | histogram | stream | scores: decode -> message sent |
| streamdetect_alerts_total | counter | stream, verdict | alert messages (verdict changes) |
| streamdetect_model_call_duration_seconds | histogram | call (encode, step) | every engine call |
| streamdetect_messages_total | counter | type | every message published |
| streamdetect_subscribers | gauge | | WebSocket subscribers now |
| streamdetect_subscriber_dropped_messages_total | counter | | messages dropped for slow subscribers, all clients ever |
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

SOURCE_STATES = ("connecting", "online", "reconnecting", "offline", "ended")  # streamdetect.sources.base.SourceState
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
MODEL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)

# status field -> (metric name without the _total a counter gets, type, help)
_STATUS_METRICS = (
    ("input_fps", "streamdetect_input_frames_per_second", GaugeMetricFamily, "Frames decoded per second"),
    ("processed_fps", "streamdetect_processed_frames_per_second", GaugeMetricFamily, "Frames processed by the model per second"),
    ("dropped_frames", "streamdetect_dropped_frames", CounterMetricFamily, "Frames dropped before processing (the source outran the model)"),
    ("corrupt_packets", "streamdetect_corrupt_packets", CounterMetricFamily, "Packets the decoder rejected as corrupt"),
    ("faces", "streamdetect_tracked_faces", GaugeMetricFamily, "Faces tracked now"),
)


class Metrics:
    """A Bus sink (called on the event loop) that keeps Prometheus metrics; render() is the /metrics body."""

    def __init__(self, bus=None):
        self.bus = bus
        self.registry = CollectorRegistry()
        self.latency = Histogram("streamdetect_frame_latency_seconds", "Decode -> scores message sent, per sampled frame",
                                 ["stream"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.alerts = Counter("streamdetect_alerts", "Verdict changes published as alerts",
                              ["stream", "verdict"], registry=self.registry)
        self.model_calls = Histogram("streamdetect_model_call_duration_seconds", "Duration of model calls (one batch each)",
                                     ["call"], buckets=MODEL_BUCKETS, registry=self.registry)
        self.messages = Counter("streamdetect_messages", "Messages published on the bus", ["type"], registry=self.registry)
        self.status: dict[str, dict] = {}  # stream -> latest status message
        self._seen: dict = {}  # ClientQueue -> its dropped count when last seen
        self._dropped_total = 0  # drops of every client ever, including those gone
        self.registry.register(_BusCollector(self))

    def __call__(self, data: dict, text: str) -> None:  # a Bus sink, on the event loop
        kind = data["type"]
        self.messages.labels(kind).inc()
        if kind == "status":
            self.status[data["stream"]] = data
        elif kind == "scores":
            self.latency.labels(data["stream"]).observe(data["latency_ms"] / 1e3)
        elif kind == "alert":
            self.alerts.labels(data["stream"], data["verdict"]).inc()
        self._count_drops()  # drops happen only while a message is delivered, so this count is exact

    def _count_drops(self) -> None:
        clients = list(self.bus.clients) if self.bus is not None else []
        self._dropped_total += sum(c.dropped - self._seen.get(c, 0) for c in clients)
        self._seen = {c: c.dropped for c in clients}  # clients that left are forgotten; their drops stay in the total

    def wrap_engine(self, engine):
        return TimedEngine(engine, self.model_calls.labels("encode"), self.model_calls.labels("step"))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _BusCollector:
    """Values read when scraped: the latest status of each stream and the subscriber queues."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def describe(self):  # without it, registering would collect once, before there is anything to read
        return []

    def collect(self):
        m = self.m
        for field, name, family, doc in _STATUS_METRICS:
            metric = family(name, doc, labels=["stream"])
            for stream, status in list(m.status.items()):
                metric.add_metric([stream], status[field])
            yield metric
        state = GaugeMetricFamily("streamdetect_source_state", "1 for the source's current state, 0 for the others",
                                  labels=["stream", "state"])
        for stream, status in list(m.status.items()):
            for s in SOURCE_STATES:
                state.add_metric([stream, s], float(status["state"] == s))
        yield state
        clients = m.bus.clients if m.bus is not None else set()
        yield GaugeMetricFamily("streamdetect_subscribers", "WebSocket subscribers connected now", value=len(clients))
        m._count_drops()
        yield CounterMetricFamily("streamdetect_subscriber_dropped_messages",
                                  "Messages dropped for slow WebSocket subscribers (all clients, including gone ones)",
                                  value=m._dropped_total)


class TimedEngine:
    """The engine itself in every respect (attributes, methods, repr), except that encode and step are timed."""

    def __init__(self, engine, encode_histogram, step_histogram):
        object.__setattr__(self, "_engine", engine)
        object.__setattr__(self, "_timers", (encode_histogram, step_histogram))

    def encode(self, crops):
        start = time.perf_counter()
        try:
            return self._engine.encode(crops)
        finally:
            self._timers[0].observe(time.perf_counter() - start)

    def step(self, features, state=None):
        start = time.perf_counter()
        try:
            return self._engine.step(features, state)
        finally:
            self._timers[1].observe(time.perf_counter() - start)

    def __getattr__(self, name):  # only called for what is not defined here: everything else is the engine's
        return getattr(self._engine, name)

    def __setattr__(self, name, value):
        setattr(self._engine, name, value)

    def __delattr__(self, name):
        delattr(self._engine, name)

    def __repr__(self) -> str:
        return repr(self._engine)

    def __enter__(self):
        self._engine.__enter__()
        return self

    def __exit__(self, *exc):
        return self._engine.__exit__(*exc)
