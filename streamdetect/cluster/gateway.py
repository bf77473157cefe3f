"""A stateless WebSocket gateway: the ordinary server and dashboard (streamdetect.server + streamdetect.bus),
fed from the streams' Redis message logs instead of a local pipeline. Run as many as you like.

- Reads `{p}:msgs:{stream}` for every wanted stream with XREAD and explicit last ids (never `$`, which would
  lose what arrives between two reads). A stream seen for the first time is read from the start of its capped
  log, so the gateway knows each stream's latest status, alerts, scores and preview before any client asks.
- A late subscriber gets the latest state first: the Bus replays each stream's last `status` and the recent
  alerts, and this gateway adds each stream's latest `scores` and `preview`.
- After a failover the resumed stream may repeat frame numbers a dead group had already published: `scores`
  and `preview` whose frame is not newer than the last one delivered for that stream are dropped here.
- With `events` (one gateway per cluster, or the one consumer you choose) the event store is a Bus sink here,
  as in the single-process service; clips need decoded frames, which stay in the groups, so cluster mode records
  events and thumbnails without clips.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from streamdetect import __version__
from streamdetect.bus import Bus
from streamdetect.cluster.store import ClusterError, Keys, connect_async, text
from streamdetect.config import ServiceConfig
from streamdetect.messages import Error, Hello
from streamdetect.server import WebSocketServer

log = logging.getLogger(__name__)

FRAMED = ("scores", "preview")


class _Raw:
    """A message already in JSON form (from Redis), published through the ordinary Bus.publish."""

    __slots__ = ("data", "text")

    def __init__(self, data: dict, text: str):
        self.data, self.text = data, text

    def to_dict(self) -> dict:
        return self.data

    def to_json(self) -> str:
        return self.text


class Gateway:
    def __init__(self, redis_url: str, prefix: str = "sd", config: ServiceConfig | None = None,
                 events: bool = False, host: str | None = None, port: int | None = None,
                 only: set[str] | None = None):
        self.redis_url, self.keys = redis_url, Keys(prefix)
        self.config = config or ServiceConfig()
        sc = self.config.server
        self.host, self.port_wanted, self.token = host or sc.host, sc.port if port is None else port, sc.token
        self.with_events = events
        self.only = set(only) if only else None  # serve these streams only (large clusters: gateways per subset)
        self.last_ids: dict[str, str] = {}  # message-log key -> last entry id read
        self.last_frame: dict[tuple[str, str], int] = {}  # (type, stream) -> last frame delivered
        self.latest: dict[tuple[str, str], tuple[dict, str]] = {}  # (type, stream) -> latest scores / preview
        self.streams: list[str] = []
        self.card: dict | None = None
        self.duplicates = 0
        self.delivered = 0
        self.redis_error: str | None = None
        self.port: int | None = None
        self._task: asyncio.Task | None = None
        self.events = self.server = self.bus = self.metrics = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> int:
        self.redis = await connect_async(self.redis_url)  # ClusterError when Redis is not there
        self.bus = bus = Bus(asyncio.get_running_loop(), replay_size=self.config.events.replay)
        if self.with_events:
            from streamdetect.events.recorder import EventRecorder

            self.events = await asyncio.to_thread(EventRecorder, self.config.events,
                                                  lambda t: bus.publish(Error(t)))
            bus.add_sink(self.events)
            bus.recent_alerts.extend(self.events.store.recent_alerts(self.config.events.replay))  # survive restarts
        self.metrics = None
        if self.config.server.metrics:  # the same /metrics as `serve`, from the messages (no model-call timings)
            from streamdetect.outputs.metrics import Metrics

            self.metrics = Metrics(bus)
            bus.add_sink(self.metrics)
        bus.replay = lambda: [*bus.recent_alerts, *self.latest.values()]  # after each stream's status: the latest state
        bus.add_sink(self._remember_latest)
        await self._refresh()
        await self._poll(block_ms=None)  # catch up on the logs before the first client connects
        self.server = WebSocketServer(bus, self.hello, self.health, self.host, self.port_wanted, self.token,
                                      metrics=self.metrics.render if self.metrics else None, events=self.events)
        self.port = await self.server.start()
        self._task = asyncio.create_task(self._run())
        return self.port

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self.server is not None:
            await self.server.close()
        if self.events is not None:
            await asyncio.to_thread(self.events.close)
        if getattr(self, "redis", None) is not None:
            await self.redis.aclose()

    # -- what clients see ---------------------------------------------------------------------------------
    def hello(self) -> str:
        model = {}
        if self.card:
            c, sc = self.card, self.config.scoring
            alert = sc.alert if sc.alert is not None else c["threshold"]
            model = {"name": c["name"], "backbone": c["config"]["backbone"], "input_size": c["config"]["input_size"],
                     "threshold": c["threshold"], "window": self.config.window, "alert": round(alert, 4),
                     "suspicious": round(max(0.0, alert - sc.suspicious_gap), 4)}
        return Hello(f"streamdetect {__version__} (cluster gateway)", list(self.streams), model).to_json()

    def health(self) -> dict:
        streams = {s: self.bus.last_status[s][0]["state"] for s in self.streams if s in self.bus.last_status}
        if self.redis_error:
            return {"status": "error", "version": __version__, "streams": streams,
                    "error": f"Redis unreachable: {self.redis_error}"}
        return {"status": "ok", "version": __version__, "streams": streams}

    # -- reading Redis ------------------------------------------------------------------------------------
    async def _refresh(self) -> None:
        names = sorted(n for n in (text(n) for n in await self.redis.hkeys(self.keys.wanted))
                       if self.only is None or n in self.only)
        for name in names:
            self.last_ids.setdefault(self.keys.msgs(name), "0-0")  # new stream: its whole (capped) log
        for key in [k for k in self.last_ids if self.keys.stream_of(k) not in names]:
            del self.last_ids[key]  # removed streams: their final `ended` status was already read
            stream = self.keys.stream_of(key)
            for kind in FRAMED:  # a stream added again under this name numbers its frames from 0
                self.last_frame.pop((kind, stream), None)
                self.latest.pop((kind, stream), None)
        self.streams = names
        if self.card is None:
            card = await self.redis.get(self.keys.card)
            self.card = json.loads(card) if card else None

    async def _poll(self, block_ms: int | None) -> None:
        if not self.last_ids:
            await asyncio.sleep((block_ms or 0) / 1e3)
            return
        while True:
            reply = await self.redis.xread(dict(self.last_ids), count=1000, block=block_ms)
            for key, entries in reply or []:
                key = text(key)
                for entry_id, fields in entries:
                    self.last_ids[key] = text(entry_id)
                    self._deliver(fields)
            if block_ms is not None or not reply:
                return  # catch-up mode (block None) reads until the logs are exhausted

    def _deliver(self, fields: dict) -> None:
        raw = text(fields[b"j"])
        data = json.loads(raw)
        kind = data["type"]
        if kind in FRAMED:
            key = (kind, data["stream"])
            if data["frame"] <= self.last_frame.get(key, -1):
                self.duplicates += 1  # a resumed stream repeating frames a dead group had published
                return
            self.last_frame[key] = data["frame"]
        self.delivered += 1
        self.bus.publish(_Raw(data, raw))

    def _remember_latest(self, data: dict, text: str) -> None:
        """A Bus sink: the replayed latest scores / preview change when the clients get the message, not when it is
        read. Set on reading, a client subscribing before the Bus delivered it got it twice: replayed, then live."""
        if data["type"] in FRAMED:
            self.latest[(data["type"], data["stream"])] = (data, text)

    async def _run(self) -> None:
        last_refresh, failures = time.monotonic(), 0
        while True:
            try:
                if time.monotonic() - last_refresh > 1.0:
                    await self._refresh()
                    last_refresh = time.monotonic()
                await self._poll(block_ms=250)
                if self.redis_error:
                    log.warning("Redis is back")
                    self.redis_error, failures = None, 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: keep the clients, say so, retry with backoff
                from streamdetect.retry import Backoff

                if self.redis_error is None:
                    self.bus.publish(Error(f"cluster gateway: lost Redis at {self.redis_url}: {exc}; retrying"))
                    log.warning("lost Redis: %s", exc)
                self.redis_error = str(exc)
                await asyncio.sleep(Backoff().delay(failures))
                failures += 1


__all__ = ["Gateway", "ClusterError"]
