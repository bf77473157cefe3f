"""Model loading for the service and the tools: a checkpoint or export directory (or a DeepfakeDetector) -> a
running engine. Graph backends run exports, so a checkpoint is exported for them on demand (once, validated,
cached under $STREAMDETECT_CACHE), and TensorRT engines are built for this GPU (once, cached in the export).

This is where engines (streamdetect.engines) and export (streamdetect.export) meet: export depends on engines,
engines on neither.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from streamdetect.engines.base import Engine
from streamdetect.engines.layout import is_export_dir
from streamdetect.engines.registry import BACKENDS, Backend, cache_dir, choose_backend, create_engine
from streamdetect.errors import EngineError, ModelError

log = logging.getLogger(__name__)


def load_engine(model, backend: str = "auto", **options) -> Engine:
    """Load `model` (a .safetensors checkpoint, an export directory, or a DeepfakeDetector for torch)."""
    name = choose_backend(model, backend)
    info = BACKENDS[name]
    model = _model_for(info, model)
    if info.name == "tensorrt":
        from streamdetect.export.tensorrt import build_engines

        build_engines(model, fp16=options.get("fp16", True), max_faces=options.get("max_faces", 32))  # cached
    return create_engine(name, model, **options)


def _model_for(info: Backend, model):
    """Hand each backend what it runs; checkpoints are exported (once, validated, cached) for graph backends."""
    from streamdetect import export
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
        export.export_model(path, cached)
    return cached


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
