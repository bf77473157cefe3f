"""Declared interfaces: every source is a FrameSource wired into the pipeline the same way, the pipeline's engine and
detector are typed, and shared helpers (backoff, device choice) exist once."""

import inspect
import threading
import time
import typing

import numpy as np

from streamdetect.config import ServiceConfig, SourceConfig
from streamdetect.sources import FrameSource, VideoSource, parse_source
from streamdetect.sources.base import END, SourceState
from streamdetect.sources.push import PushSource
from tests.conftest import make_clip

MEMBERS = ["name", "state", "decoded", "corrupt_packets", "last_error", "dropped", "attach", "start", "stop", "read"]


def test_both_sources_implement_frame_source(tmp_path):
    video = VideoSource(parse_source(str(make_clip(tmp_path / "a.mp4", seconds=0.2))))
    push = PushSource("call")
    for source in (video, push):
        assert isinstance(source, FrameSource)
        for member in MEMBERS:
            assert hasattr(source, member), (type(source).__name__, member)
        assert source.dropped == 0 and source.read() is None
    assert set(MEMBERS) <= {n for n in dir(FrameSource) if not n.startswith("_")} | set(FrameSource.__annotations__)


def test_attach_wakes_the_reader_and_reports_states(tmp_path):
    for source in (VideoSource(parse_source(str(make_clip(tmp_path / "b.mp4", seconds=0.2)))),
                   PushSource("call", buffer_size=2)):  # one slot: end() would drop the pushed frame for END
        ready, events = threading.Event(), []
        source.attach(ready, events.append)
        source.start()
        if isinstance(source, PushSource):
            source.push(np.zeros((8, 8, 3), np.uint8))
            source.end()
        assert ready.wait(10)
        items, deadline = [], time.monotonic() + 20
        while END not in items and time.monotonic() < deadline:
            item = source.read()
            items.append(item) if item is not None else time.sleep(0.005)
        source.stop()
        assert items[-1] is END and len(items) > 1
        assert [e.state for e in events][-1] is SourceState.ENDED and all(e.stream == source.name for e in events)


def test_pipeline_takes_typed_engine_detector_and_frame_sources(engine, tmp_path):
    from streamdetect.engines.base import Engine
    from streamdetect.faces.detector import FaceDetector
    from streamdetect import pipeline as pipeline_module
    from streamdetect.pipeline import Pipeline

    # Engine is imported for type checkers only (streamdetect.engines imports torch)
    hints = typing.get_type_hints(Pipeline.__init__, {**vars(pipeline_module), "Engine": Engine})
    assert hints["engine"] is Engine and hints["detector"] is FaceDetector
    assert hints["sources"] == typing.Iterable[FrameSource]

    class NoFaces:
        def detect(self, rgb, tiled=True):
            return []

        def close(self):
            pass

    clip = make_clip(tmp_path / "c.mp4", seconds=0.2)
    push = PushSource("pushed")
    statuses = []
    cfg = ServiceConfig(sources=(SourceConfig(str(clip), "file"),))
    pipeline = Pipeline(cfg, engine, NoFaces(), lambda m: statuses.append(m) if m.type == "status" else None,
                        sources=[push])
    assert [type(w.source) for w in pipeline.workers] == [VideoSource, PushSource]
    push.buffer.dropped = 3  # what status() reports is the source's `dropped`, not a reach into its buffer
    assert pipeline.status(pipeline.workers[1]).dropped_frames == 3
    pipeline.start()
    push.end()
    assert pipeline.wait(30)
    pipeline.stop()
    assert {s.stream for s in statuses} == {"file", "pushed"} and pipeline.error is None


def test_pipeline_signature_documents_the_interfaces():
    from streamdetect.pipeline import Pipeline

    params = inspect.signature(Pipeline.__init__).parameters
    assert list(params)[:4] == ["self", "config", "engine", "detector"]


# -- shared helpers ---------------------------------------------------------------------------------------------
def test_one_backoff():
    from streamdetect import retry
    from streamdetect.clients import guard
    from streamdetect.clients import library as client
    from streamdetect.sources import Backoff as from_sources
    from streamdetect.sources.pyav import Backoff as from_pyav

    assert from_pyav is from_sources is client.Backoff is guard.Backoff is retry.Backoff
    b = retry.Backoff(initial_s=1.0, max_s=4.0)
    for attempt, full in [(0, 1.0), (1, 2.0), (2, 4.0), (10, 4.0), (5000, 4.0)]:
        assert all(full / 2 <= b.delay(attempt) <= full for _ in range(20))


def test_one_device_rule(monkeypatch):
    import pytest
    import torch

    from streamdetect.devices import pick_device
    from streamdetect.engines import ort
    from streamdetect.errors import EngineError
    from streamdetect.training import train

    assert pick_device("auto", ("cpu", "cuda")) == "cuda" and pick_device("auto", ("cpu",)) == "cpu"
    assert pick_device("cuda:1", ("cpu", "cuda")) == "cuda:1"
    with pytest.raises(ValueError, match="unknown torch device 'tpu'"):
        pick_device("tpu", what="torch")
    with pytest.raises(EngineError, match="'cuda' was asked for"):
        pick_device("cuda", ("cpu",))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train.pick_device("auto") == torch.device("cpu")
    with pytest.raises(EngineError, match="torch sees no CUDA GPU"):
        train.pick_device("cuda")
    monkeypatch.setattr(ort.import_ort(), "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert ort.pick_device("auto") == "cpu"
    with pytest.raises(EngineError, match="GPU build"):
        ort.pick_device("tensorrt")
    with pytest.raises(ValueError, match="unknown ONNX Runtime device"):
        ort.pick_device("gpu")


# -- export depends on engines, not the reverse -------------------------------------------------------------------
def test_engines_do_not_import_export():
    import subprocess
    import sys

    code = ("import sys, streamdetect.engines, streamdetect.engines.registry, streamdetect.engines.ort, "
            "streamdetect.engines.trt, streamdetect.engines.pytorch; "
            "print([m for m in sys.modules if m.startswith('streamdetect.export') or m == 'streamdetect.loading'])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_export_table_names_the_backends_that_load_it():
    import dataclasses

    from streamdetect import engines, loading
    from streamdetect.engines import registry
    from streamdetect.engines.layout import GRAPH_SUFFIXES
    from streamdetect.export.formats import EXPORT_FORMATS, ExportFormat

    assert {f.name for f in dataclasses.fields(ExportFormat)} == {"name", "backend", "fp16"}  # nothing unread
    assert set(EXPORT_FORMATS) == set(GRAPH_SUFFIXES)
    for fmt in EXPORT_FORMATS.values():
        assert registry.BACKENDS[fmt.backend].runs == "export" and fmt.suffix == GRAPH_SUFFIXES[fmt.name]
    assert engines.load_engine is registry.load_engine is loading.load_engine  # the old names still work


def test_loading_builds_tensorrt_engines_before_the_engine_loads_them(monkeypatch, tmp_path):
    """TensorRT is not installed on this project's machines: the order of the loader's steps is checked with stubs."""
    from streamdetect import loading
    from streamdetect.engines import registry
    from streamdetect.engines.layout import CARD_FILE, GRAPHS, graph_path
    from streamdetect.export import tensorrt

    (tmp_path / CARD_FILE).write_text("{}")
    for graph in GRAPHS:
        graph_path(tmp_path, graph).write_bytes(b"")
    calls = []
    monkeypatch.setattr(registry, "unavailable_reason", lambda name: None)
    monkeypatch.setattr(tensorrt, "build_engines", lambda folder, **kw: calls.append(("build", folder, kw)))
    monkeypatch.setattr(loading, "create_engine", lambda name, model, **kw: calls.append(("create", name, model, kw)))
    loading.load_engine(tmp_path, backend="tensorrt", max_faces=8)
    assert calls == [("build", tmp_path, {"fp16": True, "max_faces": 8}), ("create", "tensorrt", tmp_path, {"max_faces": 8})]


def test_progress_bars_have_totals_and_stay_quiet_off_a_terminal():
    import io

    from streamdetect.training.progress import progress_bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    quiet, shown = io.StringIO(), Terminal()
    assert list(progress_bar([1, 2, 3], desc="x", unit="item", file=quiet)) == [1, 2, 3] and quiet.getvalue() == ""
    with progress_bar(total=5, desc="x", unit="item", file=shown) as bar:
        assert bar.total == 5 and not bar.disable
        bar.update(5)
    assert "5/5" in shown.getvalue()
    off = progress_bar(range(4), desc="x", unit="item", enabled=False, file=Terminal())
    assert off.disable and off.total == 4
