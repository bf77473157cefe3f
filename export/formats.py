"""The export formats table: which formats `streamdetect export` writes, their graph files and options. Which
backend loads what, and what it needs to run, is the engines registry's (streamdetect.engines.registry.BACKENDS);
the directory layout both share is streamdetect.engines.layout.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamdetect.engines.layout import CARD_FILE, GRAPH_SUFFIXES, GRAPHS, graph_path

__all__ = ["CARD_FILE", "EXPORT_FORMATS", "ExportFormat", "GRAPHS", "check_options", "graph_path"]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    backend: str  # the engines registry key (BACKENDS) that loads this format
    fp16: bool  # whether --fp16 is meaningful

    @property
    def suffix(self) -> str:
        """File suffix of each exported graph."""
        return GRAPH_SUFFIXES[self.name]


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("onnx", "onnxruntime", fp16=False),
        ExportFormat("tensorrt", "tensorrt", fp16=True),
    )
}
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
