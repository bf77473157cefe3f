"""ONNX Runtime backend: CPU everywhere; CUDA and TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from streamdetect.devices import pick_device as _pick_device
from streamdetect.engines.base import Engine
from streamdetect.errors import EngineError, MissingDependencyError
from streamdetect.engines.layout import CARD_FILE, graph_path
from streamdetect.model.card import ModelCard

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "cpu", "The ONNX Runtime backend (and export validation)") from exc
    return onnxruntime


def pick_device(device: str = "auto") -> str:
    """auto | cpu | cuda | tensorrt -> the device whose execution providers this ONNX Runtime has (devices.pick_device)."""
    providers = set(import_ort().get_available_providers())
    available = [name for name, chain in PROVIDERS.items() if chain[0] in providers]
    return _pick_device(device, available, known=PROVIDERS, what="ONNX Runtime",
                        fix="install the GPU build instead of the CPU one: pip uninstall onnxruntime && "
                            "pip install 'streamdetect[gpu]'")


def make_session(path: str | Path, device: str = "cpu", threads: int | None = None, fp16: bool = False, cache_dir=None):
    """An InferenceSession that does not busy-spin: spinning threads halved end-to-end fps on 2 cores."""
    ort = import_ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    providers = []
    for name in PROVIDERS[device]:
        if name == "TensorrtExecutionProvider":
            cache = str(cache_dir or Path(path).parent / "ort-trt-cache")
            providers.append((name, {"trt_fp16_enable": fp16, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache}))
        else:
            providers.append(name)
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise EngineError(f"ONNX Runtime could not load {path}: {exc}") from exc


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, export_dir: str | Path, device: str = "auto", threads: int | None = None, fp16: bool = False):
        export_dir = Path(export_dir)
        device = pick_device(device)
        self.encoder = make_session(graph_path(export_dir, "encoder"), device, threads, fp16)
        self.stepper = make_session(graph_path(export_dir, "step"), device, threads, fp16)
        self.card = ModelCard.from_json((export_dir / CARD_FILE).read_text(), source=str(export_dir / CARD_FILE))
        provider = self.encoder.get_providers()[0]
        self.on_gpu = provider != "CPUExecutionProvider"
        self.device = f"ONNX Runtime {import_ort().__version__} {provider}"

    def encode(self, crops: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"crops": self.check_crops(crops)})[0]

    def _step(self, features, h, c):
        return tuple(self.stepper.run(None, {"features": features, "h": h, "c": c}))

    def close(self) -> None:
        self.encoder = self.stepper = None
