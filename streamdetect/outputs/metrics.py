"""Prometheus metrics (stub: replaced by the real collectors)."""

from __future__ import annotations


class Metrics:
    def __init__(self, bus=None):
        self.bus = bus

    def __call__(self, data: dict, text: str) -> None:  # a Bus sink
        pass

    def wrap_engine(self, engine):
        return engine

    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain; version=0.0.4"
