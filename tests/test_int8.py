"""INT8 (export.quantize): a small model quantised on face crops of the bundled sample clip, measured against FP32
on held-out crops of the same clip, its choice written to int8.json and obeyed by the ONNX Runtime engine."""

import json

import numpy as np
import pytest
import torch

from streamdetect.engines.layout import INT8_FILE, int8_graph_path, int8_graphs, read_int8
from streamdetect.engines.ort import OnnxRuntimeEngine, graph_precisions
from streamdetect.errors import EngineError
from streamdetect.export import export_model
from streamdetect.export.quantize import Int8Policy, decide, export_int8, sample_clip_split
from tests.conftest import small_model

# The stated bound for this small random-weight model (MobileNetV2 + LSTM-32): INT8 p_fake within 0.02 of FP32 on
# average and 0.1 at worst over the held-out frames. The bundled model's numbers are in the README.
MEAN_BOUND, MAX_BOUND = 0.02, 0.1
ALWAYS_FASTER = Int8Policy(min_speedup=0.0)  # timing on a shared 2-core CI box must not flip what a test checks


@pytest.fixture(scope="module")
def sample_split():
    """Calibration crops (face before it leaves the frame) and held-out crops (after it returns) of sample.mp4."""
    calibration, held_out = sample_clip_split(112, "box", stride=4)
    assert len(calibration) >= 30 and len(held_out) >= 30
    return calibration, held_out


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, sample_split):
    folder = tmp_path_factory.mktemp("int8")
    export_model(small_model(hidden=32), folder)
    calibration, held_out = sample_split
    report = export_int8(folder, calibration, held_out=held_out, policy=ALWAYS_FASTER, speed_rounds=2,
                         calibration_source="sample clip")
    return folder, report


def test_int8_is_written_with_its_parity_and_chosen(int8_export):
    folder, report = int8_export
    assert int8_graph_path(folder, "encoder").is_file() and (folder / "encoder.onnx").is_file()
    written = json.loads((folder / INT8_FILE).read_text())
    assert written == report
    par = written["parity"]["encoder"]
    assert par["frames"] >= 30 and par["mean_abs_delta"] > 0, "identical outputs: the INT8 graph did not run"
    assert par["mean_abs_delta"] <= MEAN_BOUND and par["max_abs_delta"] <= MAX_BOUND
    assert written["prefer"] == "int8" and written["graphs"] == {"encoder": "int8", "step": "fp32"}
    assert written["quantization"]["encoder"]["format"] == "QDQ" and written["quantization"]["encoder"]["per_channel"]
    assert set(written["speed"]["encoder"]["ms_per_batch"]) == {"fp32", "int8"}
    assert any("below" in r for r in written["reasons"])  # LSTM-32: too small to quantise the step graph
    assert not int8_graph_path(folder, "step").exists()


def test_engine_loads_int8_when_the_folder_prefers_it(int8_export, sample_split, rng):
    folder, _ = int8_export
    _, held_out = sample_split
    auto = OnnxRuntimeEngine(folder, device="cpu")
    fp32 = OnnxRuntimeEngine(folder, device="cpu", precision="fp32")
    assert auto.precision == {"encoder": "int8", "step": "fp32"} and "INT8 encoder" in auto.device
    assert fp32.precision == {"encoder": "fp32", "step": "fp32"}
    crops = held_out[:5]
    got, want = auto.encode(crops), fp32.encode(crops)
    assert got.shape == want.shape and got.dtype == np.float32
    assert not np.array_equal(got, want)
    cosine = np.sum(got * want, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.9, f"INT8 features point elsewhere than FP32 ones (cosine {cosine.min():.3f})"
    p_int8, _ = auto.step(got)
    p_fp32, _ = fp32.step(want)
    assert np.abs(p_int8 - p_fp32).max() <= MAX_BOUND


def test_precision_option_is_checked(int8_export, small_export):
    folder, _ = int8_export
    with pytest.raises(ValueError, match="precision"):
        OnnxRuntimeEngine(folder, device="cpu", precision="int4")
    with pytest.raises(EngineError, match="no INT8 encoder"):
        OnnxRuntimeEngine(small_export, device="cpu", precision="int8")
    assert graph_precisions(small_export) == {"encoder": "fp32", "step": "fp32"}  # no int8.json: FP32
    assert graph_precisions(folder, device="cuda") == {"encoder": "fp32", "step": "fp32"}  # measured for CPU only


def test_model_that_int8_breaks_is_kept_fp32(tmp_path, sample_split):
    """A frame-level model whose head turns the small feature error INT8 brings into large p_fake changes (logit
    margin spread 4 around 0 over the sample's face) fails the bound: kept FP32, and the engine's default loads
    FP32 although the INT8 graph is there to be forced."""
    calibration, held_out = sample_split
    model = small_model(hidden=1, temporal="none")
    with torch.no_grad():
        features = model.encode(torch.from_numpy(calibration)).numpy()
        w = model.head.weight.numpy()
        margin = features @ (w[1] - w[0])
        scale = 4.0 / margin.std()
        model.head.weight.mul_(scale)
        model.head.bias.copy_(torch.tensor([0.0, -float(np.median(margin) * scale)]))
    export_model(model, tmp_path)
    report = export_int8(tmp_path, calibration, held_out=held_out, policy=ALWAYS_FASTER, speed_rounds=0)
    assert report["prefer"] == "fp32" and report["graphs"]["encoder"] == "fp32"
    assert report["parity"]["encoder"]["mean_abs_delta"] > MEAN_BOUND
    assert any("differs too much" in r for r in report["reasons"])
    assert read_int8(tmp_path)["prefer"] == "fp32" and int8_graphs(tmp_path) == {}
    assert OnnxRuntimeEngine(tmp_path, device="cpu").precision["encoder"] == "fp32"
    assert OnnxRuntimeEngine(tmp_path, device="cpu", precision="int8").precision["encoder"] == "int8"


def test_decision_needs_auc_and_speed_within_the_policy():
    ok_parity = {"frames": 100, "mean_abs_delta": 0.005, "max_abs_delta": 0.03}
    policy = Int8Policy()
    fast = {"speedup": 1.4}
    assert decide("encoder", policy, ok_parity, fast, {"fp32": 0.70, "int8": 0.695, "frames": 100})[0]
    keep, why = decide("encoder", policy, ok_parity, fast, {"fp32": 0.70, "int8": 0.688, "frames": 100})
    assert not keep and any("AUC drops" in r for r in why)
    keep, why = decide("encoder", policy, ok_parity, {"speedup": 1.04}, None)
    assert not keep and any("not faster" in r for r in why)
    bad = {"frames": 100, "mean_abs_delta": 0.03, "max_abs_delta": 0.05}
    assert not decide("encoder", policy, [ok_parity, bad], fast, None)[0]  # every held-out set must pass


def test_step_graph_dynamic_int8_and_reexport_voids_int8(tmp_path, sample_split):
    """The step graph's Gemms become dynamic-INT8 MatMuls within the bound; exporting other weights into the
    folder removes every INT8 file, and a choice made from other FP32 graphs is never loaded."""
    model = small_model(hidden=64)
    export_model(model, tmp_path)
    calibration, held_out = sample_split
    report = export_int8(tmp_path, calibration, held_out=held_out, policy=ALWAYS_FASTER, step="always", speed_rounds=0)
    assert int8_graph_path(tmp_path, "step").is_file()
    assert report["parity"]["step"]["max_abs_delta"] <= MAX_BOUND
    assert report["graphs"] == {"encoder": "int8", "step": "int8"}
    engine = OnnxRuntimeEngine(tmp_path, device="cpu")
    assert engine.precision == {"encoder": "int8", "step": "int8"}
    p, (h, c) = engine.step(engine.encode(held_out[:3]))
    assert p.shape == (3,) and h.shape == (3, 64)

    saved = {p: p.read_bytes() for p in (tmp_path / INT8_FILE, int8_graph_path(tmp_path, "encoder"),
                                         int8_graph_path(tmp_path, "step"))}
    assert set(int8_graphs(tmp_path)) == {"encoder", "step"}
    export_model(small_model(hidden=64, seed=1), tmp_path)
    assert not any(p.exists() for p in saved)
    for p, data in saved.items():  # a stale choice and its graphs copied back beside new FP32 graphs
        p.write_bytes(data)
    assert int8_graphs(tmp_path) == {}
    assert OnnxRuntimeEngine(tmp_path, device="cpu").precision == {"encoder": "fp32", "step": "fp32"}


def test_quantize_export_makes_a_whole_int8_export_elsewhere(small_export, tmp_path):
    """What `streamdetect export --int8` runs: crops from the sample clip in the card's crop style, the INT8 export
    written into another folder (a copy of the FP32 export beside it), the source export untouched."""
    from streamdetect.engines.layout import is_export_dir
    from streamdetect.export.quantize import quantize_export

    out = tmp_path / "int8-export"
    report = quantize_export(small_export, out_dir=out, speed_rounds=0, policy=ALWAYS_FASTER)
    assert is_export_dir(out) and int8_graph_path(out, "encoder").is_file()
    assert not (small_export / INT8_FILE).exists() and not int8_graph_path(small_export, "encoder").exists()
    assert "sample clip" in report["quantization"]["encoder"]["calibration"]["source"]
    assert report["auc"] == {"encoder": None} and report["speed"] == {"encoder": None}
    assert OnnxRuntimeEngine(out, device="cpu").precision["encoder"] == report["graphs"]["encoder"]


def test_choice_made_on_a_vnni_cpu_is_not_trusted_without_vnni(int8_export, tmp_path, monkeypatch):
    """INT8 chosen where the CPU has int8 dot products (VNNI) may be slower, or saturate, on an AVX2-only CPU: the
    engine's default loads FP32 there until export_int8 is run on such a machine."""
    import shutil

    import streamdetect.engines.layout as layout

    folder = shutil.copytree(int8_export[0], tmp_path / "export")
    report = json.loads((folder / INT8_FILE).read_text())
    report["machine"]["isa"] = ["avx2", "avx512_vnni", "avx512f"]
    (folder / INT8_FILE).write_text(json.dumps(report))
    monkeypatch.setattr(layout, "cpu_isa", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert set(int8_graphs(folder)) == {"encoder"}
    monkeypatch.setattr(layout, "cpu_isa", lambda: {"avx2"})
    assert int8_graphs(folder) == {}
    assert OnnxRuntimeEngine(folder, device="cpu").precision["encoder"] == "fp32"
