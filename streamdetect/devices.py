"""Device choice, one rule for every backend: "auto" takes a GPU when there is one, else the CPU; a device asked
for by name must be there, and the error says what is."""

from __future__ import annotations

from typing import Collection, Iterable

from streamdetect.errors import EngineError


def pick_device(requested: str = "auto", available: Collection[str] = ("cpu",),
                known: Iterable[str] = ("cpu", "cuda"), auto: Iterable[str] = ("cuda",), what: str = "this backend",
                fix: str = "use device 'cpu' or 'auto'") -> str:
    """`requested` ('auto', a name in `known`, optionally with an index such as 'cuda:1') -> the device to use.

    available: the devices `what` can use here; auto: the devices "auto" prefers, in order, before 'cpu'.
    ValueError for a name not in `known`, EngineError (with `fix`) for a known one not available here."""
    known = tuple(known)
    if requested == "auto":
        return next((d for d in auto if d in available), "cpu")
    kind = requested.split(":", 1)[0]
    if kind not in known:
        raise ValueError(f"unknown {what} device {requested!r}; choose auto, {', '.join(known)}")
    if kind not in available:
        raise EngineError(f"device {requested!r} was asked for but {what} here has only {sorted(available)}; {fix}")
    return requested


def torch_device(requested: str = "auto") -> str:
    """pick_device for PyTorch (training, the torch engine): 'cpu', or 'cuda' when torch sees a CUDA GPU."""
    import torch

    available = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    return pick_device(requested, available, what="torch", fix="torch sees no CUDA GPU; use device 'cpu' or 'auto'")
