"""MQTT publishing (stub: replaced by the real publisher)."""

from __future__ import annotations


class MqttPublisher:
    def __init__(self, config, streams: list[str]):
        self.config, self.streams = config, streams

    def start(self) -> None:
        pass

    def __call__(self, data: dict, text: str) -> None:  # a Bus sink
        pass

    def close(self) -> None:
        pass
