"""torch -> ONNX for both graphs, with the model card embedded and validation before anything is written."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch

from streamdetect.errors import ExportError
from streamdetect.export.formats import CARD_FILE, GRAPHS, graph_path
from streamdetect.export.graphs import GRAPH_SPECS
from streamdetect.export.progress import timed
from streamdetect.export.validate import VALIDATORS, ValidationReport
from streamdetect.model.detector import DeepfakeDetector

log = logging.getLogger(__name__)
OPSET = 17
CARD_KEY = "streamdetect.card"
GRAPH_KEY = "streamdetect.graph"


def export_onnx(model: DeepfakeDetector, out_dir: str | Path) -> list[ValidationReport]:
    """Write encoder.onnx, step.onnx and card.json into out_dir; raise ValidationError (writing nothing) on mismatch.

    Every graph is exported and validated under a temporary name first; only when all pass do they replace the
    files in out_dir, so a failed re-export never leaves a new encoder beside an old step graph.
    """
    from streamdetect.engines.ort import import_ort, make_session

    import_ort()  # fail before minutes of export work if validation cannot run
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.float().cpu().eval()
    reports, staged = [], {}
    try:
        for graph in GRAPHS:
            final = graph_path(out_dir, graph)
            tmp = staged[final] = final.with_name(f"{final.name}.{os.getpid()}.partial")  # pid: parallel exports
            with timed(f"export {graph}.onnx", log) as t:
                _export_graph(model, graph, tmp)
                t.note(f"{tmp.stat().st_size / 1e6:.1f} MB")
            with timed(f"validate {graph}.onnx against torch", log) as t:
                reports.append(VALIDATORS[graph](model, _runner(make_session(tmp, "cpu"), graph)))
                t.note(str(reports[-1]))
        card = out_dir / f"{CARD_FILE}.{os.getpid()}.partial"
        card.write_text(model.card.to_json() + "\n")
        staged[out_dir / CARD_FILE] = card
        for final, tmp in staged.items():
            tmp.replace(final)
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return reports


def _export_graph(model: DeepfakeDetector, graph: str, path: Path) -> None:
    import onnx

    spec = GRAPH_SPECS[graph]
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about python-int shapes are expected here
            torch.onnx.export(
                spec.wrap(model).eval(), spec.dummy(model, 2), str(path), dynamo=False, opset_version=OPSET,
                input_names=list(spec.inputs), output_names=list(spec.outputs), dynamic_axes=spec.dynamic_axes,
                do_constant_folding=True,
            )
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ExportError(f"torch.onnx.export failed for the {graph} graph of {model.card.config}: {exc}") from exc
    proto = onnx.load(str(path))
    for key, value in ((CARD_KEY, model.card.to_json()), (GRAPH_KEY, graph)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "streamdetect"
    onnx.save(proto, str(path))


def _runner(session, graph: str):
    names = GRAPH_SPECS[graph].inputs
    return lambda *arrays: session.run(None, dict(zip(names, arrays)))
