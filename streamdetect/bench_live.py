"""`streamdetect bench-live`: the whole live pipeline (decode -> detect/track/crop -> encoder -> step -> scores)
on emulated 720p30 cameras with 1..8 faces and 1..4 streams, per backend.

Each camera is a file paced to real time with the live drop policy (drop oldest), so a pipeline that cannot
keep up shows it the way a real camera would: processed fps below 30 and dropped frames, latency bounded.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from streamdetect.config import ServerConfig, ServiceConfig, SourceConfig
from streamdetect.engines.registry import cache_dir
from streamdetect.service import sample_clip


@dataclass(frozen=True)
class LiveResult:
    backend: str
    streams: int
    faces_per_stream: int
    processed_fps: float  # per stream
    face_frames_per_s: float  # all streams together
    latency_p50_ms: float
    latency_p95_ms: float
    dropped_pct: float


def faces_clip(n: int, seconds: float = 8.0) -> Path:
    """720p30 clip with n copies of the sample's face in a grid (made once, cached)."""
    import av

    path = cache_dir() / "bench-live" / f"faces{n}.mp4"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = int(np.ceil(np.sqrt(n * 16 / 9)))
    rows = int(np.ceil(n / cols))
    cell_w, cell_h = 1280 // cols, 720 // rows
    tmp = path.with_suffix(".partial.mp4")
    with av.open(str(sample_clip())) as src, av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "26", "g": "60"}
        for i, frame in enumerate(src.decode(video=0)):
            if i >= seconds * 30:
                break
            rgb = frame.to_ndarray(format="rgb24")
            if not 150 <= i <= 210:  # skip the sample's "face out of frame" stretch by holding a frame
                last = rgb
            cell = cv2.resize(last, (cell_w, cell_h), interpolation=cv2.INTER_AREA)
            canvas = np.zeros((720, 1280, 3), np.uint8)
            for k in range(n):
                r, c = divmod(k, cols)
                canvas[r * cell_h : (r + 1) * cell_h, c * cell_w : (c + 1) * cell_w] = cell
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


def run_case(engine, detector, streams: int, faces: int, seconds: float, warmup: float = 3.0) -> LiveResult:
    from streamdetect.pipeline import Pipeline

    clip = str(faces_clip(faces))
    sources = tuple(SourceConfig(clip, f"cam{i + 1}", realtime=True, loop=True, policy="drop_oldest")
                    for i in range(streams))
    config = ServiceConfig(sources=sources, server=ServerConfig(scores_hz=0))
    samples = []  # (time, faces scored, latency ms)

    def on_frame(frame, face_scores):
        now = time.monotonic()
        samples.append((now, sum(f.p_fake is not None for f in face_scores), (now - frame.captured_at) * 1e3))

    pipeline = Pipeline(config, engine, detector, lambda m: None, on_frame).start()
    time.sleep(warmup)
    start, dropped0 = time.monotonic(), sum(w.source.dropped for w in pipeline.workers)
    decoded0 = sum(w.source.decoded for w in pipeline.workers)
    time.sleep(seconds)
    end = time.monotonic()
    dropped = sum(w.source.dropped for w in pipeline.workers) - dropped0
    decoded = sum(w.source.decoded for w in pipeline.workers) - decoded0
    pipeline.stop()
    window = [s for s in samples if start <= s[0] < end]
    lat = np.array([s[2] for s in window]) if window else np.array([np.nan])
    return LiveResult(engine.name, streams, faces, round(len(window) / (end - start) / streams, 1),
                      round(sum(s[1] for s in window) / (end - start), 1), round(float(np.percentile(lat, 50)), 1),
                      round(float(np.percentile(lat, 95)), 1), round(100 * dropped / max(1, decoded), 1))


def run_bench_live(model, backends, faces=(1, 2, 4, 8), streams=(1, 2, 3, 4), seconds: float = 10.0) -> list[LiveResult]:
    from streamdetect.loading import load_engine
    from streamdetect.faces.detector import MediaPipeFaceDetector

    cases = [(1, f) for f in faces] + [(s, 1) for s in streams if s > 1]
    for n in sorted({f for _, f in cases}):
        faces_clip(n)
    detector = MediaPipeFaceDetector()
    results = []
    try:
        for name in backends:
            engine = load_engine(model, backend=name)
            for n_streams, n_faces in tqdm(cases, desc=f"bench-live {name}", unit="case", leave=False):
                results.append(run_case(engine, detector, n_streams, n_faces, seconds))
            engine.close()
    finally:
        detector.close()
    return results


def format_table(results: list[LiveResult]) -> str:
    head = f"{'backend':<12} {'streams':>7} {'faces':>5} {'fps/stream':>10} {'face-frames/s':>13} {'p50 ms':>7} {'p95 ms':>7} {'dropped':>7}"
    rows = [f"{r.backend:<12} {r.streams:>7} {r.faces_per_stream:>5} {r.processed_fps:>10.1f} {r.face_frames_per_s:>13.1f} "
            f"{r.latency_p50_ms:>7.1f} {r.latency_p95_ms:>7.1f} {r.dropped_pct:>6.1f}%" for r in results]
    return "\n".join([head, "-" * len(head), *rows])


def as_dicts(results):
    return [asdict(r) for r in results]
