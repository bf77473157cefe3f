"""bench-live: capacity mode (files at full speed, nothing dropped), the eager-torch ratio on every row, the
hardware and load lines. Short runs on a small clip and the small test model: what is checked is the bookkeeping,
never a speed."""

import json

import pytest

from streamdetect.bench import hardware
from streamdetect.bench import live as bench_live
from streamdetect.bench.live import LiveResult, format_table, run_case, with_ratios
from tests.support.clips import encode, sample_frames


@pytest.fixture
def small_clip(tmp_path, monkeypatch):
    """bench_live's camera clip replaced by 40 frames of the sample (made once per test, not 8 s of 720p)."""
    path = encode(tmp_path / "faces.mp4", sample_frames(40))
    monkeypatch.setattr(bench_live, "faces_clip", lambda n, seconds=8.0: path)
    return path


@pytest.mark.parametrize("capacity", [True, False])
def test_a_case_measures_frames_faces_and_the_detector(engine, detector, small_clip, capacity):
    r = run_case(engine, detector, streams=1, faces=1, seconds=1.5, warmup=0.5, capacity=capacity)
    assert r.mode == ("capacity" if capacity else "live") and r.processed_fps > 0
    assert 0 < r.face_frames_per_s <= r.processed_fps * 1.01 * r.streams  # one face per frame at most
    assert 0 < r.detector_passes_per_frame < 1.5 and r.detector_ms_per_frame > 0 and r.load >= 0
    if capacity:
        assert r.dropped_pct == 0  # the wait policy drops nothing


def test_every_row_gets_the_ratio_to_torch_on_the_same_case():
    def res(backend, streams, faces, ffps, mode="live"):
        return LiveResult(backend, streams, faces, ffps / streams / faces, ffps, 10.0, 20.0, 0.0, mode=mode)

    rows = with_ratios([res("onnxruntime", 1, 1, 30.0), res("onnxruntime", 4, 1, 80.0), res("torch", 1, 1, 15.0),
                        res("torch", 4, 1, 20.0), res("onnxruntime", 1, 8, 100.0)])
    assert [r.vs_reference for r in rows] == [2.0, 4.0, 1.0, 1.0, None]  # no torch row for 1 x 8: no ratio
    text = format_table(rows)
    assert "vs torch" in text and "4.00x" in text and "capacity" not in text
    md = format_table(rows, markdown=True).splitlines()
    assert md[0].startswith("| backend | mode |") and len(md) == 2 + len(rows) and "| 2.00x |" in md[2]


def test_the_reference_backend_is_added_to_the_run(monkeypatch):
    ran = []

    class FakeEngine:
        def __init__(self, name):
            self.name = name

        def close(self):
            pass

    class FakeDetector:
        def close(self):
            pass

    monkeypatch.setattr("streamdetect.loading.load_engine", lambda model, backend: FakeEngine(backend))
    monkeypatch.setattr("streamdetect.faces.detector.MediaPipeFaceDetector", FakeDetector)
    monkeypatch.setattr("streamdetect.engines.available_backends", lambda: ["onnxruntime", "torch"])
    monkeypatch.setattr(bench_live, "faces_clip", lambda n, seconds=8.0: None)

    def fake_case(engine, detector, streams, faces, seconds, capacity=False):
        ran.append((engine.name, streams, faces, capacity))
        return LiveResult(engine.name, streams, faces, 30.0, 30.0 * faces * streams * (2 if engine.name == "onnxruntime" else 1),
                          1.0, 2.0, 0.0, mode="capacity" if capacity else "live")

    monkeypatch.setattr(bench_live, "run_case", fake_case)
    rows = bench_live.run_bench_live("m", ["onnxruntime"], seconds=1, capacity=True, cases=[(4, 1), (1, 8)])
    assert ran == [("onnxruntime", 4, 1, True), ("onnxruntime", 1, 8, True), ("torch", 4, 1, True), ("torch", 1, 8, True)]
    assert [r.vs_reference for r in rows] == [2.0, 2.0, 1.0, 1.0]


def test_hardware_and_load_lines():
    assert "cores" in hardware.describe()
    assert "load" not in hardware.describe() and "min" in hardware.load()
    header = bench_live.header("m", capacity=True)
    assert "hardware:" in header and "load:" in header and "capacity" in header


class Unclosed:
    """The session's engine, which the bench must not close for the tests after this one."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def close(self):
        pass


def test_the_module_entry_runs_a_capacity_case(engine, small_clip, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("streamdetect.loading.load_engine", lambda model, backend: Unclosed(engine))
    out = tmp_path / "live.json"
    assert bench_live.main(["--capacity", "--case", "1x1", "--seconds", "1", "--no-reference", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "capacity" in text and "face-frames/s" in text
    data = json.loads(out.read_text())
    assert data["capacity"] is True and data["results"][0]["mode"] == "capacity" and "load" in data
