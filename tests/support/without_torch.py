"""Run the `streamdetect` command as if torch (and the other torch-only packages) were not installed.

    python tests/support/without_torch.py serve --port 0 ...

Importing a blocked package raises ModuleNotFoundError and importlib.util.find_spec says it is absent, as in a
`pip install 'streamdetect[cpu]'` venv. In such a venv (CI's torch-free install) blocking changes nothing. On exit
it reports on stderr if a blocked module was imported anyway (it cannot be: the import fails).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

BLOCKED = ("torch", "torchvision", "efficientnet_lite_pytorch", "onnx")  # not matplotlib: mediapipe needs it


def _blocked(name: str) -> bool:
    return name.split(".")[0] in BLOCKED


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if _blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: torch-free run)", name=name)
        return None


def block() -> None:
    real = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a, **k: None if _blocked(name) else real(name, *a, **k)
    sys.meta_path.insert(0, _Block())


if __name__ == "__main__":
    block()
    from streamdetect.cli import main

    sys.exit(main(sys.argv[1:]))
