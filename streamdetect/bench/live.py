"""`streamdetect bench-live`: the whole live pipeline (decode -> detect/track/crop -> encoder -> step -> scores)
on emulated 720p30 cameras with 1..8 faces and 1..4 streams, per backend.

Each camera is a file paced to real time with the live drop policy (drop oldest), so a pipeline that cannot
keep up shows it the way a real camera would: processed fps below 30 and dropped frames, latency bounded.
Capacity mode (`--capacity`) feeds the files at full speed with the `wait` policy instead: nothing is dropped and
face-frames/s is the most the machine processes end to end (decode, faces, model, scoring). Every table has
eager torch's figure on the same case, measured in the same run, as a ratio, and each case the 1-minute load.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from streamdetect.bench import hardware
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
    mode: str = "live"  # "live": paced cameras, drop-oldest; "capacity": files at full speed, wait policy
    detector_passes_per_frame: float = 0.0  # face-detector inferences per processed frame (faces.stage)
    detector_ms_per_frame: float = 0.0  # their wall time per processed frame
    load: float = 0.0  # 1-minute load average at the end of the case (shared machines)
    vs_reference: float | None = None  # face-frames/s over eager torch's on the same case, same run


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



def run_case(engine, detector, streams: int, faces: int, seconds: float, warmup: float = 3.0,
             capacity: bool = False) -> LiveResult:
    """One case. Live: files paced to 30 fps, drop-oldest (a camera). Capacity: files decoded as fast as the
    pipeline takes them, `wait` policy (nothing dropped), so processed fps x faces is the most face-frames/s."""
    from streamdetect.pipeline import Pipeline

    clip = str(faces_clip(faces))
    sources = tuple(SourceConfig(clip, f"cam{i + 1}", realtime=not capacity, loop=True,
                                 policy="wait" if capacity else "drop_oldest")
                    for i in range(streams))
    config = ServiceConfig(sources=sources, server=ServerConfig(scores_hz=0, preview_hz=0))
    samples = []  # (time, faces scored, latency ms)

    def on_frame(frame, face_scores):
        now = time.monotonic()
        samples.append((now, sum(f.p_fake is not None for f in face_scores), (now - frame.captured_at) * 1e3))

    stats = getattr(detector, "stats", None)
    pipeline = Pipeline(config, engine, detector, lambda m: None, on_frame).start()
    try:
        time.sleep(warmup)
        start, dropped0 = time.monotonic(), sum(w.source.dropped for w in pipeline.workers)
        decoded0 = sum(w.source.decoded for w in pipeline.workers)
        passes0 = {k: list(v) for k, v in stats.items()} if stats is not None else {}
        time.sleep(seconds)
        end = time.monotonic()
        dropped = sum(w.source.dropped for w in pipeline.workers) - dropped0
        decoded = sum(w.source.decoded for w in pipeline.workers) - decoded0
        passes = {k: [v[0] - passes0.get(k, [0, 0.0])[0], v[1] - passes0.get(k, [0, 0.0])[1]]
                  for k, v in (stats or {}).items()}
    finally:
        pipeline.stop()
    if pipeline.error is not None:
        raise pipeline.error
    window = [s for s in samples if start <= s[0] < end]
    lat = np.array([s[2] for s in window]) if window else np.array([np.nan])
    frames = max(1, len(window))
    return LiveResult(
        engine.name, streams, faces, round(len(window) / (end - start) / streams, 1),
        round(sum(s[1] for s in window) / (end - start), 1), round(float(np.percentile(lat, 50)), 1),
        round(float(np.percentile(lat, 95)), 1), round(100 * dropped / max(1, decoded), 1),
        mode="capacity" if capacity else "live",
        detector_passes_per_frame=round(sum(n for n, _ in passes.values()) / frames, 2),
        detector_ms_per_frame=round(1e3 * sum(t for _, t in passes.values()) / frames, 2),
        load=round(os.getloadavg()[0], 1))


def run_bench_live(model, backends, faces=(1, 2, 4, 8), streams=(1, 2, 3, 4), seconds: float = 10.0,
                   capacity: bool = False, reference: str | None = "torch", cases=None) -> list[LiveResult]:
    """Every case on every backend. `reference` (eager torch) is added to the backends when missing, so every
    table carries its ratio measured in the same run (None where the reference could not run). cases: explicit
    (streams, faces) pairs instead of 1 stream x `faces` and `streams` x 1 face."""
    from streamdetect.engines import available_backends
    from streamdetect.faces.detector import MediaPipeFaceDetector
    from streamdetect.loading import load_engine

    cases = list(cases) if cases else [(1, f) for f in faces] + [(s, 1) for s in streams if s > 1]
    backends = list(backends)
    if reference and reference not in backends and reference in available_backends():
        backends.append(reference)
    for n in sorted({f for _, f in cases}):
        faces_clip(n)
    detector = MediaPipeFaceDetector()
    results = []
    try:
        for name in backends:
            engine = load_engine(model, backend=name)
            try:
                for n_streams, n_faces in tqdm(cases, desc=f"bench-live {name}", unit="case", leave=False):
                    results.append(run_case(engine, detector, n_streams, n_faces, seconds, capacity=capacity))
            finally:
                engine.close()
    finally:
        detector.close()
    return with_ratios(results, reference)


def with_ratios(results: list[LiveResult], reference: str | None = "torch") -> list[LiveResult]:
    """Each result with face-frames/s over the reference backend's on the same case (same run)."""
    ref = {(r.streams, r.faces_per_stream, r.mode): r.face_frames_per_s for r in results if r.backend == reference}
    out = []
    for r in results:
        base = ref.get((r.streams, r.faces_per_stream, r.mode))
        out.append(replace(r, vs_reference=round(r.face_frames_per_s / base, 2) if base else None))
    return out


def format_table(results: list[LiveResult], markdown: bool = False) -> str:
    cols = ["backend", "mode", "streams", "faces", "fps/stream", "face-frames/s", "p50 ms", "p95 ms", "dropped",
            "vs torch", "det passes/frame", "det ms/frame", "load"]
    rows = [[r.backend, r.mode, r.streams, r.faces_per_stream, f"{r.processed_fps:.1f}", f"{r.face_frames_per_s:.1f}",
             f"{r.latency_p50_ms:.1f}", f"{r.latency_p95_ms:.1f}", f"{r.dropped_pct:.1f} %",
             "-" if r.vs_reference is None else f"{r.vs_reference:.2f}x", f"{r.detector_passes_per_frame:.2f}",
             f"{r.detector_ms_per_frame:.1f}", f"{r.load:.1f}"] for r in results]
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join(["---"] * 2 + ["---:"] * (len(cols) - 2)) + " |"]
        return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])
    widths = [max(len(str(c)) for c in [h] + [row[i] for row in rows]) for i, h in enumerate(cols)]
    fmt = lambda row: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    head = fmt(cols)
    return "\n".join([head, "-" * len(head), *(fmt(row) for row in rows)])


def as_dicts(results):
    return [asdict(r) for r in results]


def header(model_desc: str, capacity: bool) -> str:
    cams = ("files at full speed, `wait` policy (capacity)" if capacity
            else "emulated cameras: 1280x720 @ 30 fps, drop-oldest")
    return f"hardware: {hardware.describe()}\nload: {hardware.load()}\nmodel: {model_desc}\n{cams}\n"


def main(argv=None) -> int:
    """`python -m streamdetect.bench.live`: bench-live with --capacity and --case (until the CLI has them)."""
    import argparse
    import json

    from streamdetect.bench.engines import default_model, describe

    p = argparse.ArgumentParser(prog="python -m streamdetect.bench.live", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="checkpoint or export directory (default: the bundled model)")
    p.add_argument("--backend", action="append", help="repeatable; default: onnxruntime (torch is always added)")
    p.add_argument("--faces", type=int, action="append", help="faces per stream, repeatable (default 1 2 4 8)")
    p.add_argument("--streams", type=int, action="append", help="streams with one face, repeatable (default 1 2 3 4)")
    p.add_argument("--case", action="append", metavar="SxF", help="explicit case, e.g. 4x1 or 1x8; repeatable")
    p.add_argument("--capacity", action="store_true", help="files at full speed, wait policy: most face-frames/s")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per case (after 3 s warm-up)")
    p.add_argument("--no-reference", action="store_true", help="do not add eager torch for the ratio column")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = p.parse_args(argv)
    model = args.model or default_model()
    cases = [tuple(int(x) for x in c.lower().split("x")) for c in args.case or []]
    results = run_bench_live(model, args.backend or ["onnxruntime"], tuple(args.faces or (1, 2, 4, 8)),
                             tuple(args.streams or (1, 2, 3, 4)), args.seconds, capacity=args.capacity,
                             reference=None if args.no_reference else "torch", cases=cases or None)
    desc = describe(model)
    print(header(desc, args.capacity))
    print(format_table(results, markdown=args.markdown))
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({"hardware": hardware.describe(), "load": hardware.load(), "model": desc,
                                               "capacity": args.capacity, "results": as_dicts(results)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
