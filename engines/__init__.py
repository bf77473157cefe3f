"""Runtime backends behind one interface (base.Engine); see registry for selection.

`load_engine` (a model path -> an engine, exporting checkpoints on demand) lives in streamdetect.loading and is
still importable from here.
"""

from streamdetect.engines.base import Engine, State
from streamdetect.engines.registry import BACKENDS, available_backends

__all__ = ["BACKENDS", "Engine", "State", "available_backends", "load_engine"]


def __getattr__(name: str):
    if name == "load_engine":  # loading depends on export, which depends on engines: imported when asked for
        from streamdetect.loading import load_engine

        return load_engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
