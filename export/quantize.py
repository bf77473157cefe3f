"""INT8 graphs for ONNX Runtime on CPU, kept only where they pay: static QDQ quantisation of the encoder (per-channel
int8 weights, uint8 activations calibrated on real face crops), dynamic int8 weights for a large step graph (an
LSTM), each checked against the FP32 graphs on held-out crops before the export folder's int8.json prefers it.

    from streamdetect.export.quantize import export_int8, sample_clip_split, prepared_split
    calibration, held_out = sample_clip_split(112, "box")            # no research data needed (CI)
    report = export_int8("exports/default", calibration, held_out=held_out)
    report["prefer"]                                                 # "int8" or "fp32", and why: report["reasons"]

Calibration and parity crops are cut the way the service cuts them (MediaPipe detector + faces.crop.align_crop in
the card's crop style), or read from `streamdetect prepare` folders, which were made with the same two functions.
What is written (engines.layout): encoder.int8.onnx, step.int8.onnx (only when tried), int8.json. The FP32 graphs
are never touched; OnnxRuntimeEngine(precision="auto") loads the INT8 ones only when int8.json prefers them.

The choice (Int8Policy): INT8 is kept for a graph only when, measured on crops it was not calibrated on,
  * mean |delta p_fake| per frame <= max_mean_delta and the worst frame <= max_max_delta (service path: encoder,
    then the step graph run over each held-out sequence with its state carried),
  * frame-level AUC on labelled validation crops (when given) drops by <= max_auc_drop (0.01),
  * and it is faster on this CPU: ms per batch of 1, 4 and 8 crops (steps for the step graph), FP32 and INT8 timed
    interleaved in one run, geometric-mean speed-up >= min_speedup.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from streamdetect.engines.layout import (CARD_FILE, GRAPHS, INT8_FILE, cpu_isa, file_sha256, graph_path, int8_graph_path,
                                         is_export_dir)
from streamdetect.errors import ExportError
from streamdetect.export.progress import timed

log = logging.getLogger(__name__)

FORMAT = 1
BATCHES = (1, 4, 8)  # faces per encoder call timed: one face, a small group, a crowd
ENCODE_BATCH = 8  # faces per encoder call for calibration and parity


@dataclass(frozen=True)
class Int8Policy:
    """When an INT8 graph is preferred over its FP32 original (see the module docstring)."""

    max_mean_delta: float = 0.02  # mean |delta p_fake| per held-out frame
    max_max_delta: float = 0.25  # the worst held-out frame
    max_auc_drop: float = 0.01  # frame-level validation AUC, FP32 minus INT8
    min_speedup: float = 1.10  # geometric mean over BATCHES of FP32 ms / INT8 ms
    step_min_params: int = 1_000_000  # smaller step graphs (a frame-level FC head) are not worth a try


@dataclass(frozen=True)
class Labelled:
    """One labelled validation sequence: consecutive crops of one item and its label (1 = fake)."""

    crops: np.ndarray
    label: int
    key: str = ""


# -- crops ------------------------------------------------------------------------------------------------------
def sample_clip_crops(size: int = 112, style: str = "box", stride: int = 2, detector: str = "full_range",
                      clip: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(crops (N, size, size, 3) uint8, frame numbers (N,)) of the face in the bundled sample clip (or `clip`), every
    `stride`-th frame, cut as the service cuts it: MediaPipe detection, the largest face, align_crop(style)."""
    import av

    from streamdetect.faces.crop import align_crop
    from streamdetect.faces.detector import MediaPipeFaceDetector
    from streamdetect.service import sample_clip

    found, numbers = [], []
    faces = MediaPipeFaceDetector(detector)
    try:
        with av.open(str(clip or sample_clip())) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % stride:
                    continue
                rgb = frame.to_ndarray(format="rgb24")
                dets = faces.detect(rgb)
                if dets:
                    det = max(dets, key=lambda d: d.box.width * d.box.height)
                    found.append(align_crop(rgb, det, size, style=style))
                    numbers.append(i)
    finally:
        faces.close()
    if not found:
        raise ExportError(f"no face found in {clip or sample_clip()}: nothing to calibrate INT8 on")
    return np.stack(found), np.asarray(numbers)


def sample_clip_split(size: int = 112, style: str = "box", stride: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held_out) crops of the sample clip: the face before it leaves the frame (frames < 154)
    calibrates, the face after it comes back (frames >= 205) is held out for parity; no frame is on both sides."""
    crops, numbers = sample_clip_crops(size, style, stride)
    return crops[numbers < 154], crops[numbers >= 205]


def prepared_split(folders: Iterable[str | Path], size: int = 112, crop: str = "box", val_fraction: float = 0.15,
                   seed: int = 3, calibration_items: int = 64, calibration_frames: int = 4,
                   validation_frames: int | None = None) -> tuple[np.ndarray, list[Labelled]]:
    """(calibration crops, labelled validation sequences) from `streamdetect prepare` folders, split by identity the
    way training splits them (training.data.split_clips with the recipe's val_fraction and split_seed, so for the
    bundled model the validation side is the model's own held-out identities). Calibration: `calibration_frames`
    frames spread over each of `calibration_items` training-side items (real and fake alternately); validation:
    every frame (or the first `validation_frames`) of every validation item."""
    from streamdetect.training.data import load_clips, split_clips

    train, val = split_clips(load_clips([str(f) for f in folders], size, crop), val_fraction, seed)
    rng = np.random.default_rng(seed)
    by_label = [[c for c in train if c.label == y] for y in (0, 1)]
    for pool in by_label:
        rng.shuffle(pool)
    chosen = [pool[i] for i in range(calibration_items) for pool in by_label if i < len(pool)][:calibration_items]
    calibration = []
    for clip in chosen:
        crops = np.load(Path(clip.folder) / f"crops_{size}.npy", mmap_mode="r")
        idx = np.unique(np.linspace(0, len(crops) - 1, calibration_frames).round().astype(int))
        calibration.append(np.asarray(crops[idx]))
    validation = [Labelled(np.asarray(np.load(Path(c.folder) / f"crops_{size}.npy", mmap_mode="r")[:validation_frames]),
                           c.label, c.key) for c in val]
    return np.concatenate(calibration), validation


# -- quantisation ------------------------------------------------------------------------------------------------
class _QuietQuantiser(logging.Filter):
    """ONNX Runtime's quantiser logs on the root logger: one INFO line per rescaled bias (hundreds) and advice to
    pre-process that the step graph deliberately skips (its optimiser would fuse MatMul + Add back into Gemm)."""

    NOISE = ("to ensure bias input", "consider to run pre-processing")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in self.NOISE)


@contextmanager
def _quiet_quantiser():
    quiet = _QuietQuantiser()
    logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)


class _CropReader:
    """ONNX Runtime's CalibrationDataReader over crops, ENCODE_BATCH faces per call."""

    def __init__(self, crops: np.ndarray):
        # Every batch the same size (the last one wraps round): histogram calibrators stack batches.
        rows = np.arange(-(-len(crops) // ENCODE_BATCH) * ENCODE_BATCH) % len(crops)
        self.batches = iter([np.ascontiguousarray(crops[rows[i:i + ENCODE_BATCH]]) for i in range(0, len(rows), ENCODE_BATCH)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"crops": batch}

    def rewind(self):  # not needed by MinMax calibration; present for readers that call it
        pass


def quantize_encoder(fp32: str | Path, out: str | Path, calibration: np.ndarray, *, per_channel: bool = True,
                     reduce_range: bool = False, method: str = "minmax", keep_ends: bool = True) -> Path:
    """Static QDQ INT8 encoder (int8 per-channel weights, uint8 activations) calibrated on `calibration` crops.
    The uint8 -> normalised float input stage stays FP32 (it is exact in float and cheap); keep_ends: the first
    and the last convolution too (the layers most sensitive to quantisation)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration = _check_crops(calibration, "calibration")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="streamdetect-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference and graph folding first (ORT's recommended pre-processing): fewer, larger QDQ node units.
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        exclude = [n.name for n in model.graph.node if n.name.startswith("/normalize/")]
        convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
        if keep_ends and convs:
            exclude += [convs[0], convs[-1]]
        staged = Path(tmp) / "int8.onnx"
        with _quiet_quantiser():
            quantize_static(
                str(pre), str(staged), _CropReader(calibration), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude, calibrate_method=methods[method],
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        _carry_metadata(fp32, staged, {"precision": "int8", "quantization": "static QDQ, per-channel int8 weights"
                                       if per_channel else "static QDQ, int8 weights"})
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(out))
    return out


def quantize_step(fp32: str | Path, out: str | Path) -> Path:
    """Dynamic INT8 step graph: int8 weights for its matrix products, activations quantised per call. Gemm (what
    torch exports nn.Linear/LSTMCell to) is first rewritten as MatMul + Add: ORT's dynamic quantiser covers MatMul."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="streamdetect-int8-") as tmp:
        model = onnx.load(str(fp32))
        _gemm_to_matmul(model)
        plain = Path(tmp) / "step.onnx"
        onnx.save(model, str(plain))
        staged = Path(tmp) / "step.int8.onnx"
        with _quiet_quantiser():
            quantize_dynamic(str(plain), str(staged), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        _carry_metadata(fp32, staged, {"precision": "int8", "quantization": "dynamic, int8 weights"})
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(out))
    return out


def _gemm_to_matmul(model) -> int:
    """Rewrite Gemm(A, B[, C]) with alpha = beta = 1, no transA and a constant B as MatMul(A, B') (+ C)."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes, changed = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        if attrs.get("transB", 0):
            w = numpy_helper.to_array(inits[node.input[1]])
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.T), node.input[1]))
        product = node.output[0] + "_matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], node.input[1]], [product], name=node.name + "_matmul"))
        if product != node.output[0]:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_bias"))
        changed += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return changed


def _carry_metadata(source: str | Path, target: Path, extra: dict) -> None:
    """Copy the FP32 graph's metadata (its model card, graph name) into the INT8 graph, plus `extra`."""
    import onnx

    src = onnx.load(str(source), load_external_data=False)
    model = onnx.load(str(target))
    have = {p.key for p in model.metadata_props}
    for prop in src.metadata_props:
        if prop.key not in have:
            model.metadata_props.add().CopyFrom(prop)
    for key, value in extra.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"streamdetect.{key}", value
    model.producer_name = "streamdetect"
    onnx.save(model, str(target))


# -- measuring ---------------------------------------------------------------------------------------------------
def encode_all(session, crops: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(None, {"crops": np.ascontiguousarray(crops[i:i + ENCODE_BATCH])})[0]
                           for i in range(0, len(crops), ENCODE_BATCH)])


def step_sequences(session, features: Sequence[np.ndarray], hidden: int) -> list[np.ndarray]:
    """p_fake after every frame of each feature sequence, its (h, c) carried from frame to frame (as the service
    steps a track), all sequences stepped together."""
    p = [np.empty(len(f), np.float32) for f in features]
    h = np.zeros((len(features), hidden), np.float32)
    c = np.zeros_like(h)
    for t in range(max((len(f) for f in features), default=0)):
        rows = np.array([i for i, f in enumerate(features) if t < len(f)])
        x = np.stack([features[i][t] for i in rows]).astype(np.float32)
        out, h_next, c_next = session.run(None, {"features": x, "h": h[rows], "c": c[rows]})
        h[rows], c[rows] = h_next, c_next
        for i, value in zip(rows, out):
            p[i][t] = value
    return p


def parity(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict:
    """mean / p99 / max |delta p_fake| per frame over all sequences."""
    d = np.abs(np.concatenate(candidate).astype(np.float64) - np.concatenate(reference))
    return {"frames": int(d.size), "sequences": len(reference), "mean_abs_delta": round(float(d.mean()), 6),
            "p99_abs_delta": round(float(np.quantile(d, 0.99)), 6), "max_abs_delta": round(float(d.max()), 6)}


def frame_auc(p: Sequence[np.ndarray], labels: Sequence[int]) -> float:
    from streamdetect.training.metrics import roc_auc

    y = np.concatenate([np.full(len(s), label) for s, label in zip(p, labels)])
    return float(roc_auc(y, np.concatenate(p)))


def time_sessions(sessions: dict, feeds, batches: Sequence[int] = BATCHES, rounds: int = 15) -> dict:
    """Median ms per call of each session for each batch size, sessions interleaved call by call (their order
    alternating each round) so load on a shared machine hits both alike. `feeds(b)` -> the input dict for b rows."""
    inputs = {b: feeds(b) for b in batches}
    for s in sessions.values():  # warm-up: first runs allocate
        for b in batches:
            s.run(None, inputs[b])
    times = {name: {b: [] for b in batches} for name in sessions}
    names = list(sessions)
    for r in range(rounds):
        for b in batches:
            for name in (names if r % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                sessions[name].run(None, inputs[b])
                times[name][b].append((time.perf_counter() - t0) * 1e3)
    return {name: {str(b): round(float(np.median(v)), 3) for b, v in per.items()} for name, per in times.items()}


def speedup(ms: dict, reference: str = "fp32", candidate: str = "int8") -> float:
    """Geometric mean over batch sizes of reference ms / candidate ms."""
    ratios = [ms[reference][b] / ms[candidate][b] for b in ms[reference]]
    return round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 3)


def machine() -> dict:
    """The CPU a measurement ran on: the engine trusts an INT8 choice only on a CPU with the same int8 dot products."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "isa": sorted(cpu_isa()), "onnxruntime": onnxruntime.__version__}


def _load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


# -- the decision ------------------------------------------------------------------------------------------------
def decide(graph: str, policy: Int8Policy, parity_: dict | Sequence[dict], speed_: dict | None,
           auc: dict | None) -> tuple[bool, list[str]]:
    """(keep INT8 for `graph`, the reasons with their numbers). Every criterion must pass (parity on every set of
    held-out frames given); unmeasured speed or AUC is said, not assumed."""
    checks = []  # (passed, the reason either way)
    for par in [parity_] if isinstance(parity_, dict) else parity_:
        mean, worst = par["mean_abs_delta"], par["max_abs_delta"]
        passed = mean <= policy.max_mean_delta and worst <= policy.max_max_delta
        checks.append((passed, f"parity ok on {par['frames']} held-out frames (mean |d| {mean:.4f}, max {worst:.4f})"
                       if passed else f"INT8 p_fake differs too much from FP32 on {par['frames']} held-out frames "
                       f"(mean |d| {mean:.4f} > {policy.max_mean_delta} or max {worst:.4f} > {policy.max_max_delta})"))
    if auc is None:
        checks.append((True, "no labelled validation crops, AUC not checked"))
    else:
        drop = auc["fp32"] - auc["int8"]
        passed = math.isfinite(drop) and drop <= policy.max_auc_drop
        checks.append((passed, f"frame AUC {auc['fp32']:.4f} -> {auc['int8']:.4f} on {auc['frames']} frames" if passed
                       else f"frame AUC drops {drop:+.4f} ({auc['fp32']:.4f} -> {auc['int8']:.4f}) > {policy.max_auc_drop}"))
    if speed_ is None:
        checks.append((True, "speed not measured"))
    else:
        s = speed_["speedup"]
        passed = s >= policy.min_speedup
        checks.append((passed, f"INT8 {s:.2f}x faster on this CPU" if passed
                       else f"INT8 not faster enough on this CPU ({s:.2f}x < {policy.min_speedup}x)"))
    return all(ok for ok, _ in checks), [f"{graph}: {why}" for _, why in checks]


# -- the whole job -----------------------------------------------------------------------------------------------
def export_int8(export_dir: str | Path, calibration_crops: np.ndarray, out_dir: str | Path | None = None, *,
                held_out: np.ndarray | Sequence[np.ndarray] | None = None, validation: Sequence[Labelled] | None = None,
                policy: Int8Policy = Int8Policy(), step: str = "auto", speed_rounds: int = 15,
                per_channel: bool = True, reduce_range: bool = False, method: str = "minmax", keep_ends: bool = True,
                calibration_source: str = "") -> dict:
    """Quantise an export folder's graphs, measure them against FP32 and record the choice in int8.json.

    export_dir: an FP32 export (`streamdetect export`); out_dir: where the INT8 graphs and int8.json go (default:
    export_dir itself; another folder receives a copy of the FP32 export too, so it is a whole export).
    calibration_crops: (N, S, S, 3) uint8 face crops. held_out: crops never used to calibrate, one array per
    sequence (an array is one sequence); validation: labelled sequences (ΔAUC, and parity when held_out is None).
    step: "auto" (try dynamic INT8 only for step graphs of >= policy.step_min_params weights), "never", "always".
    speed_rounds: rounds of interleaved timing per batch size (0: not measured, so not part of the choice).
    Returns the report written to int8.json.
    """
    import onnxruntime

    from streamdetect.engines.ort import make_session
    from streamdetect.model.card import ModelCard

    export_dir = Path(export_dir)
    if not is_export_dir(export_dir):
        raise ExportError(f"{export_dir} is not an export folder; make one with: streamdetect export CHECKPOINT --out {export_dir}")
    if step not in ("auto", "never", "always"):
        raise ValueError(f"step must be auto, never or always, not {step!r}")
    out = Path(out_dir) if out_dir is not None else export_dir
    if out.resolve() != export_dir.resolve():
        out.mkdir(parents=True, exist_ok=True)
        for name in (CARD_FILE, *(graph_path("", g).name for g in GRAPHS)):
            shutil.copy2(export_dir / name, out / name)
    card = ModelCard.from_json((out / CARD_FILE).read_text(), source=str(out / CARD_FILE))
    size, hidden = card.config.input_size, card.config.hidden_size
    calibration_crops = _check_crops(calibration_crops, "calibration", size)
    sequences = _sequences(held_out) if held_out is not None else [v.crops for v in validation or ()]
    if not sequences:
        raise ValueError("export_int8 needs held-out crops (held_out=) or labelled validation crops (validation=)")
    sequences = [_check_crops(s, "held-out", size) for s in sequences]
    (out / INT8_FILE).unlink(missing_ok=True)  # a stale choice must not outlive the graphs it was made for

    with timed(f"quantise encoder ({len(calibration_crops)} calibration crops)", log):
        quantize_encoder(graph_path(out, "encoder"), int8_graph_path(out, "encoder"), calibration_crops,
                         per_channel=per_channel, reduce_range=reduce_range, method=method, keep_ends=keep_ends)
    enc = {"fp32": make_session(graph_path(out, "encoder")), "int8": make_session(int8_graph_path(out, "encoder"))}
    step_fp32 = make_session(graph_path(out, "step"))

    report = {
        "format": FORMAT, "prefer": "fp32", "graphs": {"encoder": "fp32", "step": "fp32"}, "reasons": [],
        "fp32_sha256": {g: file_sha256(graph_path(out, g)) for g in GRAPHS},  # what the INT8 graphs were made from
        "policy": asdict(policy), "machine": machine(),
        "quantization": {
            "encoder": {"file": int8_graph_path(out, "encoder").name, "format": "QDQ", "weights": "int8",
                        "per_channel": per_channel, "reduce_range": reduce_range, "activations": "uint8",
                        "fp32_layers": "input normalisation" + (", first and last conv" if keep_ends else ""),
                        "calibration": {"method": method, "crops": int(len(calibration_crops)),
                                        "source": calibration_source}},
            "step": None, "onnxruntime": onnxruntime.__version__,
        },
    }
    # Parity: the service path (encoder, then the step graph with state carried) with only the encoder changed.
    with timed("parity of the INT8 encoder", log):
        feats = {k: _encode_sequences(s, sequences) for k, s in enc.items()}
        p = {k: step_sequences(step_fp32, f, hidden) for k, f in feats.items()}
        report["parity"] = {"encoder": parity(p["fp32"], p["int8"])}
    auc = None
    if validation:
        with timed(f"frame AUC on {len(validation)} validation sequences", log):
            labels = [v.label for v in validation]
            vp = p if held_out is None else {k: step_sequences(step_fp32, _encode_sequences(s, [v.crops for v in validation]), hidden)
                                             for k, s in enc.items()}
            auc = {"fp32": round(frame_auc(vp["fp32"], labels), 4), "int8": round(frame_auc(vp["int8"], labels), 4),
                   "frames": int(sum(len(x) for x in vp["fp32"])), "sequences": len(validation),
                   "real": labels.count(0), "fake": labels.count(1)}
            auc["delta"] = round(auc["int8"] - auc["fp32"], 4)
            if held_out is not None:
                report["parity"]["encoder_validation"] = parity(vp["fp32"], vp["int8"])
    report["auc"] = {"encoder": auc}
    speed = None
    if speed_rounds:
        crops = np.concatenate(sequences)
        load0 = _load()
        ms = time_sessions(enc, lambda b: {"crops": np.ascontiguousarray(crops[np.arange(b) % len(crops)])},
                           rounds=speed_rounds)
        speed = {"ms_per_batch": ms, "speedup": speedup(ms), "rounds": speed_rounds, "load": [load0, _load()],
                 "threads": enc["fp32"].get_session_options().intra_op_num_threads}
    report["speed"] = {"encoder": speed}
    keep, why = decide("encoder", policy, [v for k, v in report["parity"].items() if k.startswith("encoder")], speed, auc)
    report["reasons"] += why
    if keep:
        report["graphs"]["encoder"] = "int8"

    # Step graph: dynamic INT8 weights, only for a step graph big enough to be worth it (an LSTM).
    params = _weights(graph_path(out, "step"))
    chosen_feats = feats[report["graphs"]["encoder"]]
    if step == "always" or (step == "auto" and params >= policy.step_min_params):
        with timed(f"quantise step ({params / 1e6:.1f} M weights)", log):
            quantize_step(graph_path(out, "step"), int8_graph_path(out, "step"))
        step_int8 = make_session(int8_graph_path(out, "step"))
        report["quantization"]["step"] = {"file": int8_graph_path(out, "step").name, "format": "dynamic",
                                          "weights": "int8", "params": params}
        ref = p["fp32"]
        got = step_sequences(step_int8, chosen_feats, hidden)
        report["parity"]["step"] = parity(ref, got)  # vs the all-FP32 path, with the encoder as chosen
        step_speed = None
        if speed_rounds:
            f_all = np.concatenate(chosen_feats)
            load0 = _load()

            def feeds(b):
                rows = np.arange(b) % len(f_all)
                rng = np.random.default_rng(b)
                return {"features": f_all[rows], "h": rng.standard_normal((b, hidden), np.float32) * 0.3,
                        "c": rng.standard_normal((b, hidden), np.float32) * 0.3}

            ms = time_sessions({"fp32": step_fp32, "int8": step_int8}, feeds, rounds=speed_rounds * 2)
            step_speed = {"ms_per_batch": ms, "speedup": speedup(ms), "rounds": speed_rounds * 2,
                          "load": [load0, _load()]}
        report["speed"]["step"] = step_speed
        step_auc = None
        if validation and held_out is None:
            labels = [v.label for v in validation]
            step_auc = {"fp32": auc["fp32"], "int8": round(frame_auc(got, labels), 4), "frames": auc["frames"]}
        keep, why = decide("step", policy, report["parity"]["step"], step_speed, step_auc)
        report["reasons"] += why
        if keep:
            report["graphs"]["step"] = "int8"
    else:
        int8_graph_path(out, "step").unlink(missing_ok=True)
        report["reasons"].append(f"step: {params:,} weights, below {policy.step_min_params:,}: kept FP32, not quantised")
    report["prefer"] = "int8" if "int8" in report["graphs"].values() else "fp32"
    write_report(out, report)
    log.info("INT8: prefer %s (%s)", report["prefer"], "; ".join(report["reasons"]))
    return report


def quantize_export(export_dir: str | Path, prepared: Sequence[str | Path] = (), out_dir: str | Path | None = None, *,
                    val_fraction: float = 0.15, seed: int = 3, speed_rounds: int = 15,
                    policy: Int8Policy = Int8Policy()) -> dict:
    """export_int8 with the crops chosen as `streamdetect export --int8` would: the card's crop size and style;
    calibration on the bundled sample clip's face (frames before it leaves the frame) plus, given `prepared`
    folders, training-side crops of them; parity on the sample clip's later frames; frame AUC on the prepared
    folders' validation identities (val_fraction/seed: the training recipe's split, 0.15/3 for the bundled model)."""
    from streamdetect.model.card import ModelCard

    card = ModelCard.from_json((Path(export_dir) / CARD_FILE).read_text(), source=str(Path(export_dir) / CARD_FILE))
    size, style = card.config.input_size, card.config.crop
    calibration, held_out = sample_clip_split(size, style)
    validation, source = None, "sample clip frames 0-153"
    if prepared:
        extra, validation = prepared_split(prepared, size, style, val_fraction, seed)
        calibration = np.concatenate([extra, calibration])
        source += f" + training-side crops of {', '.join(map(str, prepared))} (split seed {seed})"
    return export_int8(export_dir, calibration, out_dir, held_out=held_out, validation=validation, policy=policy,
                       speed_rounds=speed_rounds, calibration_source=source)


def write_report(out_dir: str | Path, report: dict) -> Path:
    path = Path(out_dir) / INT8_FILE
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(report, indent=1, allow_nan=False, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON: {type(value)}")


def _encode_sequences(session, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    feats = encode_all(session, np.concatenate(sequences))
    return np.split(feats, np.cumsum([len(s) for s in sequences])[:-1])


def _sequences(held_out) -> list[np.ndarray]:
    return [held_out] if isinstance(held_out, np.ndarray) else list(held_out)


def _check_crops(crops, what: str, size: int | None = None) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[-1] != 3 or len(crops) == 0 \
            or (size is not None and crops.shape[1:3] != (size, size)):
        raise ValueError(f"{what} crops must be a non-empty uint8 (N, {size or 'S'}, {size or 'S'}, 3) array, "
                         f"got {crops.dtype} {crops.shape}")
    return crops


def _weights(path: Path) -> int:
    import onnx

    model = onnx.load(str(path))
    return int(sum(np.prod(i.dims) for i in model.graph.initializer))
