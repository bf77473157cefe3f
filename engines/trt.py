"""Native TensorRT backend: serialized engines built by export/tensorrt.py, CUDA memory managed through torch.

This module also owns the engine files' naming (cache_key, engine_dir) and header (read_engine), which the
builder in export/tensorrt.py writes: export depends on engines, not the reverse. It does not build engines
itself: streamdetect.loading.load_engine builds them (once, cached) before loading.

NOTE: written against the TensorRT 10 Python API and not run on the development machine (no GPU, and
TensorRT does not install from its registries). ONNX Runtime's TensorRT execution provider is the other
route to TensorRT (`load_engine(..., backend="onnxruntime", device="tensorrt")`).
"""

from __future__ import annotations

import json
import re
import struct
import threading
from pathlib import Path

import numpy as np

from streamdetect.engines.base import Engine
from streamdetect.engines.layout import GRAPHS, graph_path
from streamdetect.errors import EngineError, ExportError, MissingDependencyError
from streamdetect.model.card import ModelCard

OPT_FACES = 4  # the batch TensorRT tunes kernels for: a typical call has a handful of faces


def import_trt():
    try:
        import tensorrt as trt

        trt.Builder  # noqa: B018  (PyPI stub packages import but have no Builder)
    except (ImportError, AttributeError) as exc:
        raise MissingDependencyError("tensorrt", "tensorrt", "TensorRT export and the tensorrt backend") from exc
    return trt


def engine_fp16(trt, fp16: bool) -> bool:
    """Whether engines are fp16: asked for, and this TensorRT can build them (11.x removed the FP16 flag)."""
    return fp16 and hasattr(trt.BuilderFlag, "FP16")


def cache_key(fp16: bool, max_faces: int) -> str:
    """GPU name + TensorRT version + precision + profile: an engine is only valid for exactly these."""
    import torch

    trt = import_trt()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "nogpu"
    raw = f"{gpu}_trt{trt.__version__}_{'fp16' if fp16 else 'fp32'}_faces1-{min(OPT_FACES, max_faces)}-{max_faces}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def engine_dir(export_dir: str | Path, fp16: bool, max_faces: int) -> Path:
    return Path(export_dir) / "tensorrt" / cache_key(fp16, max_faces)


def read_engine(path: str | Path) -> tuple[dict, bytes]:
    """Split an engine file into its JSON header and the serialized engine."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise ExportError(f"{path} is empty or truncated; delete it so it is rebuilt")
    (size,) = struct.unpack("<I", data[:4])
    try:
        header = json.loads(data[4 : 4 + size])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{path} has no StreamDetect header (not built by streamdetect export); delete it") from exc
    return header, data[4 + size :]


class _Graph:
    """One deserialized engine with its execution context; runs batches in chunks of at most max_faces."""

    def __init__(self, trt, runtime, path: Path):
        import torch

        self.torch = torch
        self.header, blob = read_engine(path)
        self.engine = runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise EngineError(f"TensorRT could not deserialize {path}: built by another TensorRT version or GPU; delete it")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.max_faces = self.engine.get_tensor_profile_shape(self.inputs[0], 0)[2][0]
        self.dtypes = {n: getattr(torch, np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))).name) for n in names}
        self.stream = torch.cuda.Stream()
        # One execution context holds shapes and addresses between calls: the live pipeline and upload scans
        # share the engine from different threads, so calls must not interleave.
        self.lock = threading.Lock()

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        with self.lock:
            return self._call(arrays)

    def _call(self, arrays) -> list[np.ndarray]:
        n = arrays[0].shape[0]
        if n == 0:  # the profile starts at 1 face (TensorRT rejects a 0 batch); a frame without faces needs no call
            return [np.zeros((0, *tuple(self.engine.get_tensor_shape(o))[1:]), np.float32) for o in self.outputs]
        chunks = [self._run([a[i : i + self.max_faces] for a in arrays]) for i in range(0, n, self.max_faces)]
        return [np.concatenate(parts) for parts in zip(*chunks)]

    def _run(self, arrays):
        torch = self.torch
        keep = []
        with torch.cuda.stream(self.stream):
            for name, array in zip(self.inputs, arrays):
                t = torch.from_numpy(array).to("cuda", self.dtypes[name], non_blocking=True)
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, t.data_ptr())
                keep.append(t)
            outs = []
            for name in self.outputs:
                t = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name], device="cuda")
                self.context.set_tensor_address(name, t.data_ptr())
                outs.append(t)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError("TensorRT execution failed (see the TensorRT log)")
        self.stream.synchronize()
        return [o.float().cpu().numpy() for o in outs]


class TensorRTEngine(Engine):
    name = "tensorrt"
    on_gpu = True

    def __init__(self, export_dir: str | Path, fp16: bool = True, max_faces: int = 32):
        trt = import_trt()
        folder = engine_dir(export_dir, engine_fp16(trt, fp16), max_faces)
        if not all(graph_path(folder, g, "tensorrt").is_file() for g in GRAPHS):
            raise EngineError(f"no TensorRT engines for this GPU, TensorRT and precision in {folder}; build them with "
                              f"`streamdetect export CHECKPOINT --format tensorrt` or load through "
                              f"streamdetect.loading.load_engine, which builds them")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.encoder = _Graph(trt, runtime, graph_path(folder, "encoder", "tensorrt"))
        self.stepper = _Graph(trt, runtime, graph_path(folder, "step", "tensorrt"))
        self.card = ModelCard.from_json(json.dumps(self.encoder.header["card"]), source=str(folder))
        self.device = f"TensorRT {trt.__version__} {folder.name}"

    def encode(self, crops: np.ndarray) -> np.ndarray:
        return self.encoder(self.check_crops(crops))[0]

    def _step(self, features, h, c):
        return tuple(self.stepper(features, h, c))
