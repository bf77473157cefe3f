"""Model loading for the service and the tools: a checkpoint or export directory (or a DeepfakeDetector) -> a
running engine. Graph backends run exports, so a checkpoint is exported for them on demand (once, validated,
cached under $STREAMDETECT_CACHE), and TensorRT engines are built for this GPU (once, cached in the export).

This is where engines (streamdetect.engines) and export (streamdetect.export) meet: export depends on engines,
engines on neither.

A checkpoint `NAME.safetensors` may ship pre-exported: a sibling export directory `NAME/` whose `checkpoint.json`
records the checkpoint's SHA-256 (and the validation report of its export). Graph backends then run that folder,
so serving the bundled model needs neither torch nor an export step. A stale folder (another hash) is ignored.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

from streamdetect.engines.base import Engine
from streamdetect.engines.layout import is_export_dir
from streamdetect.engines.registry import BACKENDS, Backend, cache_dir, choose_backend, create_engine
from streamdetect.errors import EngineError, MissingDependencyError, ModelError

log = logging.getLogger(__name__)
SOURCE_FILE = "checkpoint.json"  # in a shipped export directory: the checkpoint it was exported from (sha256)


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
    detector = sys.modules.get("streamdetect.model.detector")  # a DeepfakeDetector exists only once torch is loaded
    if detector is not None and isinstance(model, detector.DeepfakeDetector):
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
    digest = _sha256(path)
    shipped = prebuilt_export(path, digest)
    cached = cache_dir() / "exports" / digest[:16]
    if shipped is not None and info.name != "tensorrt":
        return shipped
    if shipped is not None and not is_export_dir(cached):  # TensorRT builds engines into the folder: a copy
        import shutil

        partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
        shutil.copytree(shipped, partial, dirs_exist_ok=True)
        partial.replace(cached)
    if not is_export_dir(cached):
        if importlib.util.find_spec("torch") is None:
            raise MissingDependencyError("torch", "export", f"Running the checkpoint {path} with {info.name} (it is "
                                         f"exported to ONNX once; or pass an export directory made elsewhere with "
                                         f"`streamdetect export`)")
        from streamdetect import export

        log.info("exporting %s to %s for %s (once; cached)", path, cached, info.name)
        export.export_model(path, cached)
    return cached


def prebuilt_export(checkpoint: Path, digest: str | None = None) -> Path | None:
    """The export directory shipped beside `checkpoint` (NAME.safetensors -> NAME/) when it was exported from
    exactly this file, else None."""
    folder = checkpoint.with_suffix("")
    if folder == checkpoint or not is_export_dir(folder):
        return None
    try:
        source = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if source.get("sha256") != (digest or _sha256(checkpoint)):
        log.warning("ignoring %s: it was exported from another version of %s", folder, checkpoint.name)
        return None
    log.info("using the pre-exported graphs in %s (validated against torch when exported: %s)", folder,
             "; ".join(source.get("validated", [])) or "no report")
    return folder


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> list:
    """Export a checkpoint to out_dir (validated, as `streamdetect export` does) and record which file it came from
    and how the export validated, so the loader runs out_dir for that checkpoint (see prebuilt_export)."""
    from streamdetect import __version__, export

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    reports = export.export_model(checkpoint, out_dir)
    versions = {"streamdetect": __version__}
    for package in ("torch", "onnx", "onnxruntime"):
        versions[package] = getattr(importlib.import_module(package), "__version__", "?")
    source = {"checkpoint": checkpoint.name, "sha256": _sha256(checkpoint), "validated": [str(r) for r in reports],
              "exported_with": versions}
    (out_dir / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
    return reports


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
