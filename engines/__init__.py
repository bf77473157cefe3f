"""Runtime backends behind one interface (base.Engine); see registry for selection.

`load_engine` (a model path -> an engine, exporting checkpoints on demand) lives in streamdetect.loading and is
still importable from here. Everything is imported when first asked for, so importing the registry (the CLI does,
for its --backend choices) loads neither NumPy nor any runtime.
"""

import importlib

__all__ = ["BACKENDS", "Engine", "State", "available_backends", "load_engine"]

_WHERE = {"Engine": "streamdetect.engines.base", "State": "streamdetect.engines.base",
          "BACKENDS": "streamdetect.engines.registry", "available_backends": "streamdetect.engines.registry",
          # loading depends on export, which depends on engines: imported when asked for
          "load_engine": "streamdetect.loading"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
