"""Export: every backbone round-trips through ONNX Runtime; a graph that disagrees with torch is never written."""

import json

import numpy as np
import onnx
import pytest
import torch

from streamdetect.engines import load_engine
from streamdetect.errors import ValidationError
from streamdetect.export import export_model, is_export_dir
from streamdetect.export.formats import check_options
from streamdetect.model import save_checkpoint
from streamdetect.model.backbones import BACKBONES
from tests.conftest import small_model


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_round_trip_for_each_backbone(backbone, tmp_path, rng):
    model = small_model(backbone, hidden=16)
    reports = export_model(model, tmp_path)
    assert [r.graph for r in reports] == ["encoder", "step"]
    assert all(r.max_abs_diff < 1e-3 for r in reports)  # per-element bound enforced by validation itself
    engine = load_engine(tmp_path, backend="onnxruntime")
    crops = rng.integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)  # batch 5: not a size seen at export
    with torch.no_grad():
        want = model.encode(torch.from_numpy(crops)).numpy()
    got = engine.encode(crops)
    assert np.abs(want).max() > 1e-2, "features are ~0: the comparison would prove nothing"
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_sequence_torch_step_and_ort_step_agree_over_30_frames(tmp_path):
    """The three ways to score a clip agree: whole-sequence forward, torch step, ONNX Runtime step (3 faces)."""
    model = small_model(hidden=64, fusion=True)
    export_model(model, tmp_path)
    ort_engine = load_engine(tmp_path, backend="onnxruntime")
    torch_engine = load_engine(model, backend="torch")
    clips = torch.randint(0, 256, (3, 30, 112, 112, 3), dtype=torch.uint8)
    with torch.no_grad():
        seq = model.probabilities(model(clips))[..., 1].numpy()
    ort_state = torch_state = None
    for t in range(30):
        crops = clips[:, t].numpy()
        p_ort, ort_state = ort_engine.step(ort_engine.encode(crops), ort_state)
        p_torch, torch_state = torch_engine.step(torch_engine.encode(crops), torch_state)
        np.testing.assert_allclose(p_torch, seq[:, t], atol=1e-5)
        np.testing.assert_allclose(p_ort, seq[:, t], atol=1e-4)
        np.testing.assert_allclose(ort_state[0], torch_state[0], atol=1e-4)
    assert seq.std() > 1e-3


def test_graphs_carry_the_card_and_declare_state(tmp_path):
    model = small_model(hidden=16)
    export_model(model, tmp_path)
    step = onnx.load(str(tmp_path / "step.onnx"), load_external_data=False)
    meta = {p.key: p.value for p in step.metadata_props}
    assert meta["streamdetect.graph"] == "step"
    assert json.loads(meta["streamdetect.card"])["config"]["hidden_size"] == 16
    assert [i.name for i in step.graph.input] == ["features", "h", "c"]
    assert [o.name for o in step.graph.output] == ["p_fake", "h_next", "c_next"]
    assert step.graph.input[1].type.tensor_type.shape.dim[0].dim_param == "faces"
    encoder = onnx.load(str(tmp_path / "encoder.onnx"), load_external_data=False)
    assert encoder.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    # TensorRT accepts a uint8 network input only when it feeds a Cast directly (NVIDIA/TensorRT#3985).
    assert [n.op_type for n in encoder.graph.node if "crops" in n.input] == ["Cast"]
    assert json.loads((tmp_path / "card.json").read_text()) == json.loads(model.card.to_json())


def test_mismatching_graph_is_refused_and_not_written(tmp_path, monkeypatch):
    """Export a graph from different weights than the ones validated against: validation must stop it."""
    import streamdetect.export.onnx as onnx_export

    model = small_model(hidden=16)
    impostor = small_model(hidden=16, seed=1)
    real_export = onnx_export._export_graph
    monkeypatch.setattr(onnx_export, "_export_graph", lambda m, graph, path: real_export(impostor, graph, path))
    with pytest.raises(ValidationError, match="encoder: features .* differs from torch"):
        export_model(model, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert not is_export_dir(tmp_path)


def test_failed_reexport_keeps_the_previous_export_whole(tmp_path, monkeypatch):
    """A re-export whose step graph fails validation must not leave a new encoder beside the old step graph."""
    import streamdetect.export.onnx as onnx_export

    export_model(small_model(hidden=16), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    newer, impostor = small_model(hidden=16, seed=2), small_model(hidden=16, seed=1)
    real_export = onnx_export._export_graph
    monkeypatch.setattr(onnx_export, "_export_graph",
                        lambda m, graph, path: real_export(impostor if graph == "step" else m, graph, path))
    with pytest.raises(ValidationError, match="step"):
        export_model(newer, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_checkpoint_is_exported_once_then_cached(tmp_path, monkeypatch):
    path = save_checkpoint(small_model(hidden=16), tmp_path / "m.safetensors")
    first = load_engine(path, backend="onnxruntime")
    import streamdetect.export as export

    monkeypatch.setattr(export, "export_model", lambda *a, **k: pytest.fail("exported twice"))
    second = load_engine(path, backend="onnxruntime")
    assert first.card == second.card


def test_format_table_checks_options():
    assert check_options("tensorrt", fp16=True).backend == "tensorrt"
    with pytest.raises(ValueError, match="--fp16 does not apply to onnx"):
        check_options("onnx", fp16=True)
    with pytest.raises(ValueError, match="unknown export format"):
        check_options("tflite", fp16=False)
