"""Runtime backends behind one interface (base.Engine); see registry for selection."""

from streamdetect.engines.base import Engine, State
from streamdetect.engines.registry import BACKENDS, available_backends, load_engine

__all__ = ["BACKENDS", "Engine", "State", "available_backends", "load_engine"]
