"""Retry pacing shared by everything that reconnects or resends: video sources, the client library, the guard's
webhook. Exponential backoff with equal jitter, so many cameras (or clients) lost together do not retry in
lockstep."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    max_attempts: int | None = None  # None: live streams retry for as long as the service runs

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based). Equal jitter: half fixed, half random."""
        d = min(self.max_s, self.initial_s * self.factor ** min(attempt, 32))  # (2.0 ** 1024 overflows)
        return d / 2 + random.uniform(0, d / 2)
