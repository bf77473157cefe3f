"""Which backends exist, which can run here, and how to load one (by name or the best available).

Optional runtimes are probed without being imported at start-up; asking for a missing one raises
MissingDependencyError naming the pip extra that provides it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from streamdetect.engines.base import Engine
from streamdetect.errors import EngineError, MissingDependencyError, ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    cls: str
    package: str  # import name that must be importable
    extra: str  # pip extra that installs it
    needs_cuda: bool
    runs: str  # "checkpoint" (torch weights) or "export" (an export directory of graphs)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("tensorrt", "streamdetect.engines.trt", "TensorRTEngine", "tensorrt", "tensorrt", True, "export"),
        Backend("onnxruntime", "streamdetect.engines.ort", "OnnxRuntimeEngine", "onnxruntime", "cpu", False, "export"),
        Backend("torch", "streamdetect.engines.pytorch", "TorchEngine", "torch", "cpu", False, "checkpoint"),
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


def load_engine(model, backend: str = "auto", **options) -> Engine:
    """Load `model` (a .safetensors checkpoint, an export directory, or a DeepfakeDetector for torch)."""
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
    info = BACKENDS[backend]
    cls = getattr(importlib.import_module(info.module), info.cls)
    return cls(_model_for(info, model), **options)


def _can_run(backend: str, model) -> bool:
    from streamdetect.export import is_export_dir

    return not (BACKENDS[backend].runs == "checkpoint" and isinstance(model, (str, Path)) and is_export_dir(model))


def _model_for(info: Backend, model):
    """Hand each backend what it runs; checkpoints are exported (once, validated, cached) for graph backends."""
    from streamdetect.export import export_model, is_export_dir
    from streamdetect.model import DeepfakeDetector

    if isinstance(model, DeepfakeDetector):
        if info.runs == "checkpoint":
            return model
        raise EngineError(f"the {info.name} backend runs exported graphs: save the model and pass the checkpoint path")
    path = Path(model)
    if not path.exists():
        raise ModelError(f"model {path} does not exist; pass a .safetensors checkpoint or an export directory")
    if info.runs == "checkpoint":
        if is_export_dir(path):
            raise EngineError(f"the {info.name} backend runs checkpoints (.safetensors), not the export directory {path}")
        return path
    if is_export_dir(path):
        return path
    if path.is_dir():
        raise ModelError(f"{path} is a directory but not an export (needs card.json, encoder.onnx, step.onnx); "
                         f"create one with: streamdetect export CHECKPOINT --out {path}")
    cached = cache_dir() / "exports" / _sha256(path)[:16]
    if not is_export_dir(cached):
        log.info("exporting %s to %s for %s (once; cached)", path, cached, info.name)
        export_model(path, cached)
    return cached


def cache_dir() -> Path:
    return Path(os.environ.get("STREAMDETECT_CACHE", Path.home() / ".cache" / "streamdetect"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
