"""What an export directory holds: the contract between `streamdetect export` (which writes it) and the engines
(which read it). Engines depend on this module only; export imports it (export depends on engines, not the reverse).
"""

from __future__ import annotations

from pathlib import Path

GRAPHS = ("encoder", "step")  # one file each per format, beside the model card
CARD_FILE = "card.json"
GRAPH_SUFFIXES = {"onnx": ".onnx", "tensorrt": ".engine"}  # file suffix of each format's graphs


def graph_path(out_dir: str | Path, graph: str, fmt: str = "onnx") -> Path:
    return Path(out_dir) / f"{graph}{GRAPH_SUFFIXES[fmt]}"


def is_export_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CARD_FILE).is_file() and all(graph_path(path, g).is_file() for g in GRAPHS)
