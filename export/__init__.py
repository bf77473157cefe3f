"""Export: torch model -> validated ONNX graphs (+ TensorRT engines), driven by formats.EXPORT_FORMATS, into the
directory layout the engines read (streamdetect.engines.layout)."""

from __future__ import annotations

from streamdetect.engines.layout import CARD_FILE, GRAPHS, graph_path, is_export_dir
from streamdetect.export.formats import EXPORT_FORMATS, check_options

__all__ = ["CARD_FILE", "EXPORT_FORMATS", "GRAPHS", "export_model", "graph_path", "is_export_dir"]


def export_model(checkpoint, out_dir, fmt: str = "onnx", fp16: bool = False, max_faces: int = 32):
    """Export a checkpoint (path or loaded model) to out_dir. ONNX always; TensorRT engines on top when asked."""
    from streamdetect.export.onnx import export_onnx
    from streamdetect.model import DeepfakeDetector, load_checkpoint

    spec = check_options(fmt, fp16)
    model = checkpoint if isinstance(checkpoint, DeepfakeDetector) else load_checkpoint(checkpoint)
    reports = export_onnx(model, out_dir)
    # Engines built from the previous graphs (e.g. before a re-calibration changed the card's temperature) are
    # keyed by GPU/TensorRT/precision only, so they must go with the graphs they were built from.
    import shutil
    from pathlib import Path

    shutil.rmtree(Path(out_dir) / "tensorrt", ignore_errors=True)
    # INT8 graphs likewise: quantised from the previous graphs, so re-made (export.quantize.export_int8) or gone.
    from streamdetect.engines.layout import INT8_FILE, int8_graph_path

    (Path(out_dir) / INT8_FILE).unlink(missing_ok=True)
    for graph in GRAPHS:
        int8_graph_path(out_dir, graph).unlink(missing_ok=True)
    if spec.name == "tensorrt":
        from streamdetect.export.tensorrt import build_engines

        build_engines(out_dir, fp16=fp16, max_faces=max_faces)
    return reports
