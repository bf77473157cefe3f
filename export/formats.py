"""The one table that drives export and loading: which formats exist, their files, options and backends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # file suffix of each exported graph
    backend: str  # engines registry key that loads it
    needs_gpu: bool
    fp16: bool  # whether --fp16 is meaningful
    extra: str | None  # pip extra providing the toolchain


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", ".onnx", "onnxruntime", needs_gpu=False, fp16=False, extra="cpu"),
        ExportFormat("tensorrt", ".engine", "tensorrt", needs_gpu=True, fp16=True, extra="tensorrt"),
    )
}

# Every export directory holds these graphs (one file each per format) and the model card.
GRAPHS = ("encoder", "step")
CARD_FILE = "card.json"


def graph_path(out_dir: str | Path, graph: str, fmt: str = "onnx") -> Path:
    return Path(out_dir) / f"{graph}{EXPORT_FORMATS[fmt].suffix}"


def check_options(fmt: str, fp16: bool) -> ExportFormat:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    spec = EXPORT_FORMATS[fmt]
    if fp16 and not spec.fp16:
        raise ValueError(
            f"--fp16 does not apply to {fmt}: ONNX graphs stay fp32 (exact on every runtime); "
            f"use --format tensorrt --fp16, or the torch backend's fp16 on CUDA."
        )
    return spec
