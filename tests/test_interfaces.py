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
