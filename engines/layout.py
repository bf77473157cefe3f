"""What an export directory holds: the contract between `streamdetect export` (which writes it) and the engines
(which read it). Engines depend on this module only; export imports it (export depends on engines, not the reverse).

INT8 (optional, streamdetect.export.quantize): `encoder.int8.onnx` (static QDQ), possibly `step.int8.onnx`
(dynamic), and `int8.json`, the parity/speed report whose `prefer` says which precision ONNX Runtime on CPU loads
by default. The FP32 graphs always stay: they are the reference and the fallback.
"""

from __future__ import annotations

import json
from pathlib import Path

GRAPHS = ("encoder", "step")  # one file each per format, beside the model card
CARD_FILE = "card.json"
GRAPH_SUFFIXES = {"onnx": ".onnx", "tensorrt": ".engine"}  # file suffix of each format's graphs
INT8_FILE = "int8.json"
PRECISIONS = ("auto", "fp32", "int8")  # what OnnxRuntimeEngine(precision=...) accepts


def graph_path(out_dir: str | Path, graph: str, fmt: str = "onnx") -> Path:
    return Path(out_dir) / f"{graph}{GRAPH_SUFFIXES[fmt]}"


def int8_graph_path(out_dir: str | Path, graph: str) -> Path:
    return Path(out_dir) / f"{graph}.int8.onnx"


def read_int8(out_dir: str | Path) -> dict | None:
    """The INT8 report of an export directory (int8.json), or None when it has none or it is unreadable."""
    path = Path(out_dir) / INT8_FILE
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def int8_graphs(out_dir: str | Path) -> dict[str, Path]:
    """The graphs int8.json chose INT8 for (graph -> file), only those present and made from the FP32 graphs now in
    the folder (their SHA-256 is in int8.json: a re-export with other weights voids the choice); {} otherwise."""
    report = read_int8(out_dir)
    if not report or report.get("prefer") != "int8":
        return {}
    chosen, made_from = report.get("graphs", {}), report.get("fp32_sha256", {})
    measured_on = set(report.get("machine", {}).get("isa", ()))
    if measured_on & INT8_DOT and not cpu_isa() & INT8_DOT:
        return {}  # chosen on a CPU with int8 dot-product instructions: on this one INT8 may be slower, or saturate
    return {g: int8_graph_path(out_dir, g) for g in GRAPHS
            if chosen.get(g) == "int8" and int8_graph_path(out_dir, g).is_file()
            and made_from.get(g) == file_sha256(graph_path(out_dir, g))}


INT8_DOT = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # x86 int8 dot products (no u8*s8 int16 saturation)
_ISA = ("avx2", "avx512f", *sorted(INT8_DOT), "asimddp", "i8mm")  # asimddp/i8mm: Arm int8 dot products


def cpu_isa() -> set[str]:
    """The SIMD features of this CPU that decide INT8 speed and exactness ({} where /proc/cpuinfo is absent)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return {f for f in _ISA if f in flags}


def file_sha256(path: str | Path) -> str | None:
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def is_export_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CARD_FILE).is_file() and all(graph_path(path, g).is_file() for g in GRAPHS)
