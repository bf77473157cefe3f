"""Which backends exist, which can run here, which one to use (by name or the best available), and how to
construct it. Loading a model with export on demand (a checkpoint for a graph backend) is streamdetect.loading's:
engines do not depend on export.

Optional runtimes are probed without being imported at start-up; asking for a missing one raises
MissingDependencyError naming the pip extra that provides it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from streamdetect.engines.layout import is_export_dir
from streamdetect.errors import EngineError, MissingDependencyError

if TYPE_CHECKING:
    from streamdetect.engines.base import Engine


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    cls: str
    package: str  # import name that must be importable
    extra: str  # pip extra that installs it (serving needs only `cpu` or `gpu`: torch is the `torch` extra's)
    needs_cuda: bool
    runs: str  # "checkpoint" (torch weights) or "export" (an export directory of graphs)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("tensorrt", "streamdetect.engines.trt", "TensorRTEngine", "tensorrt", "tensorrt", True, "export"),
        Backend("onnxruntime", "streamdetect.engines.ort", "OnnxRuntimeEngine", "onnxruntime", "cpu", False, "export"),
        Backend("torch", "streamdetect.engines.pytorch", "TorchEngine", "torch", "torch", False, "checkpoint"),
    )
}
AUTO_ORDER = tuple(BACKENDS)  # fastest first: TensorRT, then ONNX Runtime (CPU/CUDA), then eager torch


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def unavailable_reason(name: str) -> str | None:
    """None when the backend can run here, else a one-line reason with the fix."""
    info = BACKENDS[name]
    if importlib.util.find_spec(info.package) is None:
        return f"needs the '{info.package}' package: pip install 'streamdetect[{info.extra}]'"
    if name == "tensorrt":
        try:  # PyPI also serves stub 'tensorrt' packages that install but cannot import
            importlib.import_module("tensorrt").Builder  # noqa: B018
        except Exception as exc:
            return f"the installed 'tensorrt' package does not work ({type(exc).__name__}: {exc})"
    if info.needs_cuda and not _cuda_available():
        return "needs an NVIDIA GPU with CUDA"
    return None


def available_backends() -> list[str]:
    return [name for name in AUTO_ORDER if unavailable_reason(name) is None]


def choose_backend(model, backend: str = "auto") -> str:
    """The backend that will run `model`: `backend` checked (it exists and can run here), or for "auto" the
    fastest available one that runs this kind of model. MissingDependencyError names the extra to install."""
    if backend == "auto":
        names = available_backends()
        if not names:
            raise EngineError("no inference backend can run here; install one: pip install 'streamdetect[cpu]'")
        # An export directory cannot feed torch, so auto never picks torch for one when another runs it.
        backend = next((n for n in names if _can_run(n, model)), names[0])
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    reason = unavailable_reason(backend)
    if reason is not None:
        info = BACKENDS[backend]
        if importlib.util.find_spec(info.package) is None:
            raise MissingDependencyError(info.package, info.extra, f"The {backend} backend")
        raise EngineError(f"the {backend} backend cannot run here: {reason}")
    return backend


def create_engine(backend: str, model, **options) -> Engine:
    """Construct a chosen backend's engine on what it runs: a checkpoint path or DeepfakeDetector ("checkpoint"
    backends) or an export directory ("export" backends, engines already built for tensorrt). Exporting a
    checkpoint first is the caller's: streamdetect.loading.load_engine does it."""
    info = BACKENDS[backend]
    cls = getattr(importlib.import_module(info.module), info.cls)
    return cls(model, **options)


def _can_run(backend: str, model) -> bool:
    return not (BACKENDS[backend].runs == "checkpoint" and isinstance(model, (str, Path)) and is_export_dir(model))


def cache_dir() -> Path:
    """Where StreamDetect caches exports and benchmark files ($STREAMDETECT_CACHE, default ~/.cache/streamdetect)."""
    return Path(os.environ.get("STREAMDETECT_CACHE", Path.home() / ".cache" / "streamdetect"))


def __getattr__(name: str):
    if name == "load_engine":  # moved: loading with export on demand is streamdetect.loading's
        from streamdetect.loading import load_engine

        return load_engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
