"""ONNX Runtime backend: CPU everywhere; CUDA and TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from streamdetect.devices import pick_device as _pick_device
from streamdetect.engines.base import Engine
from streamdetect.errors import EngineError, MissingDependencyError
from streamdetect.engines.layout import CARD_FILE, PRECISIONS, graph_path, int8_graph_path, int8_graphs, read_int8
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


def trt_cache_dir(graph: str | Path) -> Path:
    """Where ONNX Runtime's TensorRT provider keeps the engines it builds for `graph`: the user's cache, keyed by
    the graph's bytes. Not beside the graph: the shipped export lives in site-packages, often read-only, and a
    TensorRT cache that cannot write its file fails (jetson-inference#1644)."""
    import hashlib

    from streamdetect.engines.registry import cache_dir

    digest = hashlib.sha256(Path(graph).read_bytes()).hexdigest()[:16]
    return cache_dir() / "ort-trt" / f"{Path(graph).stem}-{digest}"


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
            cache = str(cache_dir or trt_cache_dir(path))
            providers.append((name, {"trt_fp16_enable": fp16, "trt_engine_cache_enable": True, "trt_engine_cache_path": cache}))
        else:
            providers.append(name)
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise EngineError(f"ONNX Runtime could not load {path}: {exc}") from exc


def graph_precisions(export_dir: str | Path, device: str = "cpu", precision: str = "auto") -> dict[str, str]:
    """graph -> "fp32" | "int8": which file OnnxRuntimeEngine loads for each graph.

    auto: what the export folder's int8.json chose (streamdetect.export.quantize measured parity, AUC and speed on
    a CPU), on CPU only; FP32 when there is no int8.json, it prefers FP32, or the device is a GPU (the INT8 graphs
    are QDQ graphs tuned and measured for the CPU provider). int8: the INT8 encoder whatever int8.json says (and
    the INT8 step graph where int8.json chose it); fp32: the FP32 graphs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    chosen = {g: "fp32" for g in ("encoder", "step")}
    if precision == "auto" and device == "cpu":
        chosen.update({g: "int8" for g in int8_graphs(export_dir)})
    elif precision == "int8":
        if not int8_graph_path(export_dir, "encoder").is_file():
            raise EngineError(f"{export_dir} has no INT8 encoder ({int8_graph_path(export_dir, 'encoder').name}); make one "
                              f"with streamdetect.export.quantize.export_int8, or load it with precision='fp32'")
        chosen["encoder"] = "int8"
        report = read_int8(export_dir) or {}
        if report.get("graphs", {}).get("step") == "int8" and int8_graph_path(export_dir, "step").is_file():
            chosen["step"] = "int8"
    return chosen


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, export_dir: str | Path, device: str = "auto", threads: int | None = None, fp16: bool = False,
                 precision: str = "auto"):
        export_dir = Path(export_dir)
        device = pick_device(device)
        self.precision = graph_precisions(export_dir, device, precision)
        files = {g: int8_graph_path(export_dir, g) if p == "int8" else graph_path(export_dir, g)
                 for g, p in self.precision.items()}
        self.encoder = make_session(files["encoder"], device, threads, fp16)
        self.stepper = make_session(files["step"], device, threads, fp16)
        self.card = ModelCard.from_json((export_dir / CARD_FILE).read_text(), source=str(export_dir / CARD_FILE))
        provider = self.encoder.get_providers()[0]
        self.on_gpu = provider != "CPUExecutionProvider"
        int8 = [g for g, p in self.precision.items() if p == "int8"]
        self.device = f"ONNX Runtime {import_ort().__version__} {provider}" + (f" (INT8 {' + '.join(int8)})" if int8 else "")

    def encode(self, crops: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"crops": self.check_crops(crops)})[0]

    def _step(self, features, h, c):
        return tuple(self.stepper.run(None, {"features": features, "h": h, "c": c}))

    def close(self) -> None:
        self.encoder = self.stepper = None
