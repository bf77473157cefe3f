"""Backend registry: selection, missing extras, bad models; and the ONNX Runtime session settings."""

import importlib.util
import sys
import types

import numpy as np
import pytest

from streamdetect.engines import available_backends, load_engine
from streamdetect.engines.registry import unavailable_reason
from streamdetect.errors import EngineError, MissingDependencyError, ModelError
from streamdetect.export import export_model
from streamdetect.export.tensorrt import read_engine
from streamdetect.model import load_checkpoint, save_checkpoint
from tests.conftest import small_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model = small_model(hidden=16)
    export_model(model, folder)
    return model, folder


def test_this_machine_offers_onnxruntime_then_torch():
    """Exact for this project's machines: TensorRT is never installed on them (CPU CI and GPU boxes alike; the
    TensorRT path is checked with stubs below), so auto picks ONNX Runtime, then eager torch."""
    assert unavailable_reason("tensorrt") == "needs the 'tensorrt' package: pip install 'streamdetect[tensorrt]'"
    assert available_backends() == ["onnxruntime", "torch"]


def test_auto_picks_onnxruntime_for_an_export(exported):
    _, folder = exported
    engine = load_engine(folder)
    assert engine.name == "onnxruntime" and "CPUExecutionProvider" in engine.device


def test_auto_exports_a_checkpoint_for_onnxruntime(tmp_path):
    path = save_checkpoint(small_model(hidden=16), tmp_path / "m.safetensors")
    assert load_engine(path).name == "onnxruntime"
    assert load_engine(path, backend="torch").name == "torch"


def test_sessions_do_not_spin(exported):
    _, folder = exported
    engine = load_engine(folder, backend="onnxruntime")
    for session in (engine.encoder, engine.stepper):
        opts = session.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_tensorrt_provider_caches_engines_in_the_user_cache_per_graph(exported, tmp_path, monkeypatch):
    """ORT's TensorRT engines go to $STREAMDETECT_CACHE, not beside the graph (the shipped export sits in a
    possibly read-only site-packages), one folder per graph content."""
    from streamdetect.engines.ort import trt_cache_dir

    _, folder = exported
    monkeypatch.setenv("STREAMDETECT_CACHE", str(tmp_path / "cache"))
    encoder, step = trt_cache_dir(folder / "encoder.onnx"), trt_cache_dir(folder / "step.onnx")
    assert encoder.is_relative_to(tmp_path / "cache") and not encoder.is_relative_to(folder)
    assert encoder != step and trt_cache_dir(folder / "encoder.onnx") == encoder
    changed = tmp_path / "encoder.onnx"
    changed.write_bytes((folder / "encoder.onnx").read_bytes() + b"\0")
    assert trt_cache_dir(changed) != encoder  # another graph, another engine


def test_missing_tensorrt_names_the_extra(exported):
    _, folder = exported
    with pytest.raises((MissingDependencyError, EngineError), match="tensorrt"):
        load_engine(folder, backend="tensorrt")


def test_missing_onnxruntime_names_the_extra(exported, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert "onnxruntime" not in available_backends()
    with pytest.raises(MissingDependencyError, match=r"pip install 'streamdetect\[cpu\]'"):
        load_engine(exported[1], backend="onnxruntime")


def test_stub_tensorrt_package_is_reported(monkeypatch):
    """PyPI serves 'tensorrt' stubs that install but cannot build anything: they must not count as TensorRT."""
    stub = types.ModuleType("tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", stub)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tensorrt" else real(name, *a))
    assert "does not work" in unavailable_reason("tensorrt")
    assert "tensorrt" not in available_backends()


def test_bad_model_arguments(tmp_path, exported):
    with pytest.raises(ModelError, match="does not exist"):
        load_engine(tmp_path / "nothing.safetensors", backend="onnxruntime")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not an export"):
        load_engine(tmp_path / "empty", backend="onnxruntime")
    with pytest.raises(EngineError, match="runs checkpoints"):
        load_engine(exported[1], backend="torch")
    with pytest.raises(ValueError, match="unknown backend"):
        load_engine(exported[1], backend="openvino")


def test_corrupt_onnx_file_is_a_clear_error(exported, tmp_path):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(exported[1], folder)
    (folder / "step.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(EngineError, match="could not load .*step.onnx"):
        load_engine(folder, backend="onnxruntime")


def test_wrong_crop_shape_is_refused(exported):
    engine = load_engine(exported[1], backend="onnxruntime")
    with pytest.raises(ValueError, match=r"uint8 crops of shape \(faces, 112, 112, 3\)"):
        engine.encode(np.zeros((1, 224, 224, 3), np.uint8))


def test_engines_start_from_zero_state(exported, rng):
    engine = load_engine(exported[1], backend="onnxruntime")
    feats = rng.standard_normal((2, engine.card.config.feature_size), dtype=np.float32)
    p1, _ = engine.step(feats)
    p2, _ = engine.step(feats, engine.init_state(2))
    np.testing.assert_array_equal(p1, p2)
    assert p1.shape == (2,) and np.all((p1 >= 0) & (p1 <= 1))


def test_engine_file_header(tmp_path):
    import json
    import struct

    from streamdetect.errors import ExportError

    header = json.dumps({"graph": "step"}).encode()
    path = tmp_path / "step.engine"
    path.write_bytes(struct.pack("<I", len(header)) + header + b"ENGINE")
    assert read_engine(path) == ({"graph": "step"}, b"ENGINE")
    path.write_bytes(b"\x01")
    with pytest.raises(ExportError, match="truncated"):
        read_engine(path)
    path.write_bytes(struct.pack("<I", 3) + b"xyz")
    with pytest.raises(ExportError, match="no StreamDetect header"):
        read_engine(path)


@pytest.mark.gpu
@pytest.mark.parametrize("which", ["test model", "bundled model"])
def test_torch_cuda_fp16_gives_the_cpu_verdicts(exported, rng, which):
    """fp16 + channels_last on CUDA against the fp32 CPU reference: p_fake (what users read) within 0.01 and the
    features within 5 % of their norm. Not element by element: on an H200 a few features of these models moved by up
    to 0.06 under fp16 (0.03 from cuDNN's TF32 convolutions alone) while p_fake moved by at most 0.004."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from streamdetect.weights import default_model_path

    model = exported[0] if which == "test model" else load_checkpoint(default_model_path())
    cpu = load_engine(model, backend="torch", device="cpu")
    fp16 = load_engine(model, backend="torch", device="cuda", fp16=True)
    crops = rng.integers(0, 256, (64, 112, 112, 3), dtype=np.uint8)
    f_cpu, f_gpu = cpu.encode(crops), fp16.encode(crops)
    assert np.isfinite(f_gpu).all()
    relative = np.linalg.norm(f_gpu - f_cpu) / np.linalg.norm(f_cpu)
    assert relative < 0.05, f"fp16 features differ by {relative:.1%} of their norm"
    p_cpu, _ = cpu.step(f_cpu)
    p_gpu, _ = fp16.step(f_gpu)
    np.testing.assert_allclose(p_gpu, p_cpu, atol=0.01)
