"""Fan-out of messages from the processing thread to WebSocket clients, each with its own bounded queue.

A slow subscriber must never stall the pipeline or the other subscribers: publishing never blocks, and a full
client queue drops its oldest "scores" message first (newer scores supersede older ones: latest wins), then the
oldest message of any type. Each client counts what it lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable, Protocol

from streamdetect.messages import Message, Subscribe

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Sees every published message on the event loop (event store, metrics, MQTT). Must not block: a sink with
    slow work (disk, network) hands it to its own thread. A failing sink is logged and never stops delivery."""

    def __call__(self, data: dict, text: str) -> None: ...


class ClientQueue:
    def __init__(self, subscription: Subscribe, maxsize: int = 64):
        self.subscription = subscription
        self.maxsize = maxsize
        self.items: deque = deque()
        self.dropped = 0
        self._event = asyncio.Event()

    def put(self, data: dict, text: str) -> None:
        if not self.subscription.wants(data):
            return
        if len(self.items) >= self.maxsize:
            victim = next((i for i, (kind, _) in enumerate(self.items) if kind == "scores"), 0)
            del self.items[victim]
            self.dropped += 1
        self.items.append((data["type"], text))
        self._event.set()

    async def get(self) -> str:
        while not self.items:
            self._event.clear()
            await self._event.wait()
        return self.items.popleft()[1]


class Bus:
    """Lives on the asyncio loop; `publish` may be called from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client_queue_size: int = 64, replay_size: int = 50):
        self.loop = loop
        self.clients: set[ClientQueue] = set()
        self.client_queue_size = client_queue_size
        # Replayed to each new subscriber, so a dashboard opened late still shows the streams and recent alerts.
        # The service seeds the alerts from the event store, so they survive a restart.
        self.last_status: dict[str, tuple] = {}  # stream -> latest status
        self.recent_alerts: deque = deque(maxlen=replay_size)
        # What a new subscriber gets after the statuses, as (data, text) pairs, oldest first (the cluster gateway
        # adds each stream's latest scores and preview).
        self.replay: Callable[[], list[tuple[dict, str]]] = lambda: list(self.recent_alerts)
        self.sinks: list[Sink] = []

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def publish(self, message: Message) -> None:
        self.loop.call_soon_threadsafe(self._deliver, message.to_dict(), message.to_json())

    def _deliver(self, data: dict, text: str) -> None:
        if data["type"] == "status":
            self.last_status[data["stream"]] = (data, text)
        elif data["type"] == "alert":
            self.recent_alerts.append((data, text))
        for sink in self.sinks:  # first: the event store has an alert queued before any client can see it
            try:
                sink(data, text)
            except Exception:
                log.exception("message sink %r failed on a %s message", sink, data["type"])
        for client in self.clients:
            client.put(data, text)

    def subscribe(self, subscription: Subscribe) -> ClientQueue:
        client = ClientQueue(subscription, self.client_queue_size)
        for data, text in [*self.last_status.values(), *self.replay()]:
            client.put(data, text)
        self.clients.add(client)
        return client

    def unsubscribe(self, client: ClientQueue) -> None:
        self.clients.discard(client)
