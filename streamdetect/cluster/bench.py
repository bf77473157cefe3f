"""`streamdetect cluster bench`: the same streams (the bundled sample clip, realtime, looped) on the single-process
pipeline, on a cluster of 1 emulated node and of 2 emulated nodes on this machine.

All cases share this machine's CPUs, so the cluster figures are a ratio (what Ray, Redis and the scorer hop cost,
and whether two nodes' worth of processes use the cores better), not a speed-up. Per case it reports the sum
over streams of processed frames/s (the pipeline's own `status.processed_fps`, averaged over the measuring
time), faces in view, p50 latency (capture -> scores) and, for clusters, the scorer's mean batch (faces/call).
"""

from __future__ import annotations

import json
import os
import statistics
import time

WARMUP_S = 6.0


def _sources(n: int):
    from streamdetect.config import SourceConfig
    from streamdetect.service import sample_clip

    return tuple(SourceConfig(str(sample_clip()), f"cam{i + 1}", realtime=True, loop=True) for i in range(n))


def _summary(samples: dict[str, list[dict]]) -> dict:
    """samples: stream -> status dicts in the measuring window."""
    fps = sum(statistics.mean(s["processed_fps"] for s in rows) for rows in samples.values() if rows)
    faces = sum(statistics.mean(s["faces"] for s in rows) for rows in samples.values() if rows)
    lat = [s["latency_ms"]["p50"] for rows in samples.values() for s in rows if s.get("latency_ms")]
    return {"processed_fps": round(fps, 1), "faces": round(faces, 1),
            "p50_latency_ms": round(statistics.median(lat), 1) if lat else None,
            "faces_per_s": round(fps * faces / max(len(samples), 1), 1)}


def bench_single(n: int, seconds: float) -> dict:
    from streamdetect.config import EventsConfig, ServiceConfig
    from streamdetect.pipeline import Pipeline
    from streamdetect.service import load_runtime

    config = ServiceConfig(sources=_sources(n), backend="onnxruntime", events=EventsConfig(enabled=False))
    engine, detector = load_runtime(config)
    pipeline = Pipeline(config, engine, detector, lambda m: None).start()
    try:
        time.sleep(WARMUP_S)
        samples: dict[str, list[dict]] = {w.name: [] for w in pipeline.workers}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(1.0)
            for w in pipeline.workers:
                samples[w.name].append(pipeline.status(w).to_dict())
    finally:
        pipeline.stop()
        detector.close()
    return {"case": "single process", "streams": n, **_summary(samples)}


def bench_cluster(n: int, nodes: int, seconds: float) -> dict:
    import ray

    from streamdetect.cluster.local import LocalCluster
    from streamdetect.cluster.store import Keys, connect
    from streamdetect.config import EventsConfig, ServiceConfig

    config = ServiceConfig(events=EventsConfig(enabled=False))
    t0 = time.monotonic()
    with LocalCluster(nodes, _sources(n), config=config, streams_per_group=2, prefix="bench") as lc:
        started = time.monotonic() - t0
        r, keys = connect(lc.redis_url), Keys("bench")
        time.sleep(WARMUP_S)
        t_start = time.time()
        time.sleep(seconds)
        samples = {}
        for sc in lc.streams:
            rows = [json.loads(f[b"j"]) for _, f in r.xrange(keys.msgs(sc.name)) if f[b"t"] == b"status"]
            samples[sc.name] = [m for m in rows if m["ts"] >= t_start and m["state"] == "online"]
        stats = ray.get(lc.director.scorer_stats.remote())[0]
        spread = len({row["node"] for row in ray.get(lc.director.streams.remote()).values()})
    return {"case": f"cluster, {nodes} node{'s' if nodes > 1 else ''}", "streams": n, **_summary(samples),
            "scorer_mean_faces_per_call": stats["encode"]["mean_rows"], "nodes_used": spread,
            "startup_s": round(started, 1)}


def format_table(rows: list[dict]) -> str:
    head = f"{'case':18} {'streams':>7} {'proc fps':>9} {'faces':>6} {'faces/s':>8} {'p50 ms':>7} {'batch':>6}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['case']:18} {r['streams']:>7} {r['processed_fps']:>9} {r['faces']:>6} {r['faces_per_s']:>8} "
                     f"{str(r['p50_latency_ms']):>7} {str(r.get('scorer_mean_faces_per_call', '-')):>6}")
    return "\n".join(lines)


def run(args) -> int:
    from streamdetect.bench import hardware

    rows = []
    load = os.getloadavg()
    for n in args.streams or (2, 4):
        rows.append(bench_single(n, args.seconds))
        for nodes in (1, 2):
            rows.append(bench_cluster(n, nodes, args.seconds))
        print(format_table(rows[-3:]), flush=True)
    after = os.getloadavg()
    text = (f"hardware: {hardware.describe()}, {os.cpu_count()} CPUs; load average before {load[0]:.2f}, "
            f"after {after[0]:.2f}\nstreams: the bundled sample clip, 1280x720 @ 30 fps, realtime, looped\n\n"
            + format_table(rows))
    print("\n" + text)
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({"hardware": hardware.describe(), "load": [load, after], "results": rows},
                                              indent=2) + "\n")
    return 0


__all__ = ["run", "bench_single", "bench_cluster"]
