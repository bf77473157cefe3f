"""ONNX -> serialized TensorRT engines, cached under a key of GPU + TensorRT version + precision + profile.

Each engine file is a 4-byte little-endian length, a JSON header (model card, graph, cache key) and the
serialized engine (ultralytics' layout), so a loader can check what it is about to run.
NOTE: written against the TensorRT 10 Python API; TensorRT cannot be installed on the development machine,
so this module has not been run there (see README, Performance).
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

from streamdetect.engines.layout import CARD_FILE, GRAPHS, graph_path
from streamdetect.engines.trt import (OPT_FACES, cache_key, engine_dir, engine_fp16, import_trt,  # noqa: F401
                                      read_engine)
from streamdetect.errors import ExportError
from streamdetect.export.progress import timed

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 4 << 30


def build_engines(export_dir: str | Path, fp16: bool = False, max_faces: int = 32) -> Path:
    """Build encoder/step engines from the export's ONNX files (skipping ones already cached); return their folder."""
    export_dir = Path(export_dir)
    trt = import_trt()
    if fp16 and not engine_fp16(trt, fp16):
        log.warning("TensorRT %s has no FP16 builder flag (removed in 11.x); building fp32 engines", trt.__version__)
    fp16 = engine_fp16(trt, fp16)
    out = engine_dir(export_dir, fp16, max_faces)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only model folder must not make the build fail after minutes of work
        raise ExportError(f"cannot write TensorRT engines to {out} ({exc}); copy the export to a writable folder") from exc
    card = (export_dir / CARD_FILE).read_text()
    for graph in GRAPHS:
        target = graph_path(out, graph, "tensorrt")
        if target.is_file():
            log.info("TensorRT %s engine cached at %s", graph, target)
            continue
        # The step graph stays fp32: its (h, c) state is carried for minutes and fp16 drift would accumulate.
        half = fp16 and graph == "encoder"
        with timed(f"build TensorRT {graph} engine ({'fp16' if half else 'fp32'}, faces 1..{max_faces})", log,
                   heartbeat_s=30) as t:
            blob = _build(graph_path(export_dir, graph), half, max_faces)
            header = json.dumps({"card": json.loads(card), "graph": graph, "key": out.name, "fp16": half}).encode()
            tmp = target.with_name(target.name + ".partial")
            tmp.write_bytes(struct.pack("<I", len(header)) + header + blob)
            tmp.replace(target)
            t.note(f"{target.stat().st_size / 1e6:.1f} MB")
    return out


def _build(onnx_path: Path, fp16: bool, max_faces: int) -> bytes:
    trt = import_trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Networks are always explicit-batch from TensorRT 10 on (the flag is deprecated, then gone in 11); 8.x needs it.
    major = int(trt.__version__.split(".")[0])
    network = builder.create_network(0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *rest), (min(OPT_FACES, max_faces), *rest), (max_faces, *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    return bytes(serialized)
