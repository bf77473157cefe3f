"""Timing and logging for long export/build steps: a silent 10-minute TensorRT build looks like a hang."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager


class _Step:
    def __init__(self):
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


@contextmanager
def timed(what: str, log: logging.Logger, heartbeat_s: float | None = None):
    """Log start, end and duration of a step; with heartbeat_s, also log 'still running' while it runs."""
    step = _Step()
    log.info("%s ...", what)
    start = time.perf_counter()
    done = threading.Event()
    if heartbeat_s:
        def beat():
            while not done.wait(heartbeat_s):
                log.info("%s: still running after %.0f s", what, time.perf_counter() - start)

        threading.Thread(target=beat, daemon=True, name=f"heartbeat:{what}").start()
    try:
        yield step
    except Exception:
        log.error("%s failed after %.1f s", what, time.perf_counter() - start)
        raise
    finally:
        done.set()
    extra = f" ({'; '.join(step.notes)})" if step.notes else ""
    log.info("%s done in %.1f s%s", what, time.perf_counter() - start, extra)
