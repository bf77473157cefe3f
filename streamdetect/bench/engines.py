"""`streamdetect bench`: encoder faces/s and latency, recurrent-step latency, per backend, on this machine."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamdetect.bench import hardware
from streamdetect.engines import available_backends
from streamdetect.loading import load_engine
from streamdetect.errors import StreamDetectError

log = logging.getLogger(__name__)
CPU_BATCHES, GPU_BATCHES = (1, 8), (1, 8, 64, 256)


@dataclass(frozen=True)
class BenchResult:
    backend: str
    device: str
    graph: str  # "encoder" or "step"
    batch: int
    faces_per_s: float
    p50_ms: float
    p95_ms: float
    calls: int


def default_model() -> Path:
    """What `serve` runs: the bundled model (graph backends run its pre-exported folder, so no torch is needed)."""
    from streamdetect.service import default_model as bundled

    return bundled()


def describe(model) -> str:
    """One line naming the benchmarked model: its card's name and architecture, and where it came from."""
    from streamdetect.engines.layout import CARD_FILE
    from streamdetect.model import ModelCard, read_card

    path = Path(model)
    try:
        card = ModelCard.from_json((path / CARD_FILE).read_text(), str(path)) if path.is_dir() else read_card(path)
    except (OSError, StreamDetectError):
        return str(model)
    cfg = card.config
    head = f"LSTM-{cfg.hidden_size}" if cfg.temporal == "lstm" else "frame-level head"
    return f"{card.name}: {cfg.backbone} @{cfg.input_size} + {head} ({path})"


def _time(fn, min_calls: int, min_seconds: float) -> list[float]:
    fn()  # warm-up: first calls allocate and pick kernels
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 20 * min_calls:
            break
    return times


def _result(engine, graph, batch, times) -> BenchResult:
    ms = np.array(times) * 1e3
    return BenchResult(engine.name, engine.device, graph, batch, round(batch * len(ms) / (ms.sum() / 1e3), 1),
                       round(float(np.percentile(ms, 50)), 2), round(float(np.percentile(ms, 95)), 2), len(ms))


def run_bench(model=None, backends=None, batches=None, min_calls: int = 10, min_seconds: float = 2.0) -> list[BenchResult]:
    model = model or default_model()
    backends = backends or available_backends()
    results = []
    for name in backends:
        try:
            engine = load_engine(model, backend=name)
        except StreamDetectError as exc:
            log.warning("skipping %s: %s", name, exc)
            continue
        sizes = batches or (GPU_BATCHES if engine.on_gpu else CPU_BATCHES)
        cfg = engine.card.config
        rng = np.random.default_rng(0)
        cases = [("encoder", b) for b in sizes] + [("step", b) for b in sizes if b <= 8]
        for graph, batch in tqdm(cases, desc=f"bench {name}", unit="case", leave=False):
            if graph == "encoder":
                crops = rng.integers(0, 256, (batch, cfg.input_size, cfg.input_size, 3), dtype=np.uint8)
                times = _time(lambda: engine.encode(crops), min_calls, min_seconds)
            else:
                feats = rng.standard_normal((batch, cfg.step_input_size), dtype=np.float32)
                state = [engine.init_state(batch)]

                def one_step():  # chained, as in streaming: each call consumes the previous state
                    state[0] = engine.step(feats, state[0])[1]

                times = _time(one_step, 10 * min_calls, min_seconds)
            results.append(_result(engine, graph, batch, times))
        engine.close()
    return results


def format_table(results: list[BenchResult], model_desc: str) -> str:
    lines = [f"hardware: {hardware.describe()}", f"model: {model_desc}", "",
             f"{'backend':<12} {'graph':<8} {'batch':>5} {'faces/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'vs torch':>8}  device",
             "-" * 100]
    torch_fps = {(r.graph, r.batch): r.faces_per_s for r in results if r.backend == "torch"}
    for r in results:
        ref = torch_fps.get((r.graph, r.batch))
        ratio = f"{r.faces_per_s / ref:.2f}x" if ref else "-"
        lines.append(f"{r.backend:<12} {r.graph:<8} {r.batch:>5} {r.faces_per_s:>9.1f} {r.p50_ms:>8.2f} {r.p95_ms:>8.2f} {ratio:>8}  {r.device}")
    return "\n".join(lines)


def write_json(results: list[BenchResult], path: str | Path, model_desc: str) -> None:
    Path(path).write_text(json.dumps({"hardware": hardware.describe(), "model": model_desc,
                                      "results": [asdict(r) for r in results]}, indent=2) + "\n")
