"""A real Mosquitto broker on a loopback port, and a real paho subscriber that records what it receives.

    with Broker(tmp_path / "broker") as broker, Watcher(broker.port, "streamdetect/#") as watcher:
        watcher.wait_for(lambda m: m.topic == "streamdetect/available" and m.payload == "online")
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s") from None
            time.sleep(0.05)


class Broker:
    """mosquitto on 127.0.0.1:port with anonymous access; with `persistent`, sessions and queued messages survive
    a stop and start (saved in the folder). Stopped (SIGTERM, then SIGKILL) on stop() or leaving the with block."""

    def __init__(self, folder: Path, port: int | None = None, persistent: bool = False):
        self.folder, self.port, self.persistent = Path(folder), port or free_port(), persistent
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    def start(self) -> Broker:
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "log_dest stderr", "log_type all"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto switches to the `mosquitto` user, who cannot write here
        if self.persistent:
            lines += ["persistence true", f"persistence_location {self.folder}/"]
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        log = open(self.folder / "mosquitto.log", "ab")
        try:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: str
    retain: bool
    at: float  # time.time() when received


class Watcher:
    """A paho client subscribed (QoS 1) to `topic`, keeping every message. With a client_id and clean=False its
    session stays on a persistent broker while it is away, so messages published meanwhile reach it later."""

    def __init__(self, port: int, topic: str, client_id: str = "", clean: bool = True):
        self.port, self.topic = port, topic
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, msg.payload.decode(), bool(msg.retain), time.time()))
            self._cond.notify_all()

    def start(self) -> Watcher:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.stop()
            raise TimeoutError(f"could not subscribe to {self.topic} on port {self.port}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_for(self, predicate, timeout: float = 20.0) -> Received:
        """The first message (already received or coming) that satisfies predicate; TimeoutError after timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((m for m in self.messages if predicate(m)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({m.topic for m in self.messages})
                    raise TimeoutError(f"no matching message within {timeout} s; topics seen: {seen}")
                self._cond.wait(left)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
