"""`streamdetect evaluate`: frame- and video-level metrics, the paper's table by sequence length, a breakdown by
manipulation method and family, temperature calibration and a threshold for the model card.

Scores are produced the way the service produces them: per-frame CNN features, then the LSTM stepped one frame
at a time with the service's staggered W-frame windows (`streamdetect.windows`). The paper's table instead runs
the LSTM fresh over the first L frames and reads the verdict after frame L.
Video score = what decides an alert in the service: the highest rolling W-frame mean of p_fake, from the
`min_frames`-th frame on ("would this video have raised an alert"); the threshold is chosen on it. The mean over
all frames (the SBI protocol) is reported beside it as `video_mean`. Photos are one-frame items.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamdetect.errors import MissingDependencyError
from streamdetect.faces.expression import clip_features
from streamdetect.model import load_checkpoint, save_checkpoint
from streamdetect.scoring import peak_confidence, reaches_alert
from streamdetect.training import metrics as M
from streamdetect.training.data import Clip, load_clips
from streamdetect.training.readers import CATEGORIES
from streamdetect.windows import TrackWindow, step_tracks

LENGTHS = (10, 20, 40, 60, 80, 100)
log = logging.getLogger(__name__)


@dataclass
class Scored:
    key: str
    label: int
    group: str  # "real", the manipulation method, or "SBI"
    family: str  # real | blend | synthesis
    kind: str
    frame_logits: np.ndarray  # (N,) logit(fake) - logit(real) after each frame, service windows
    length_logits: dict  # L -> the fresh-LSTM verdict after L frames


class _LogitSteps:
    """Engine-shaped adapter over the torch model whose 'p_fake' is the raw logit margin (for calibration)."""

    def __init__(self, model):
        self.model, self.card = model, model.card

    @torch.no_grad()
    def step(self, features, state):
        logits, (h, c) = self.model.step_logits(torch.from_numpy(features), tuple(map(torch.from_numpy, state)))
        return (logits[:, 1] - logits[:, 0]).numpy(), (h.numpy(), c.numpy())


@torch.no_grad()
def score_clip(model, crops: np.ndarray, landmarks: np.ndarray, window: int, lengths=LENGTHS):
    """Per-frame logit margins (service path) and the verdict after L frames for each L the clip reaches."""
    feats = torch.cat([model.encode(torch.from_numpy(crops[i:i + 32])) for i in range(0, len(crops), 32)])
    expr = None
    if model.card.config.expression_size:
        expr = torch.from_numpy(clip_features(landmarks))
    feats = model.join(feats, expr)
    engine, track = _LogitSteps(model), TrackWindow(window, model.card.config.hidden_size)
    frame = np.array([step_tracks(engine, [track], feats[t:t + 1].numpy())[0] for t in range(len(feats))])
    by_length = {}
    for n in lengths:
        if len(feats) >= n:
            logits = model.temporal(feats[None, :n])[0][0, -1]
            by_length[n] = float(logits[1] - logits[0])
    return frame, by_length


@torch.no_grad()
def score_clips(model, clips: list[Clip], window: int = 20, sbi: bool = True, max_frames: int = 150,
                seed: int = 1234, progress: bool = True) -> list[Scored]:
    from streamdetect.training.progress import progress_bar
    from streamdetect.training.sbi import self_blend_clip

    size = model.card.config.input_size
    out = []
    for i, clip in enumerate(progress_bar(clips, desc="evaluate", unit="clip", enabled=progress)):
        folder = Path(clip.folder)
        crops = np.load(folder / f"crops_{size}.npy")[:max_frames]
        marks = np.load(folder / "landmarks.npy")[:max_frames] * size
        f, ln = score_clip(model, crops, marks, window)
        out.append(Scored(clip.key, clip.label, clip.method if clip.label else "real", clip.family, clip.kind, f, ln))
        if sbi and clip.label == 0:  # the same self-blended fakes on every run: seeded by position
            fakes, _ = self_blend_clip(crops, marks[..., :2], np.random.default_rng([seed, i]))
            f, ln = score_clip(model, fakes, marks, window)
            out.append(Scored(clip.key + "#sbi", 1, "SBI", "blend", clip.kind, f, ln))
    return out


alert_score = peak_confidence  # its former name here (streamdetect.scoring keeps the rule)


def _alert_rate(v: np.ndarray, threshold: float) -> float:
    """The fraction of items that would have raised an alert."""
    return round(float(reaches_alert(v, threshold).mean()), 4)


def calibration_frames(scored: list[Scored]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame logit margins and labels that the temperature is fitted on: the real-world clips (self-blended
    copies only when there are no real-world fakes)."""
    calib = [s for s in scored if s.group != "SBI"]
    if not any(s.label for s in calib):
        calib = scored
    return (np.concatenate([s.frame_logits for s in calib]),
            np.concatenate([np.full(len(s.frame_logits), s.label) for s in calib]))


def video_scores(scored: list[Scored], temperature: float, window: int = 20, min_frames: int = 10) -> np.ndarray:
    """Each clip's video score: the peak of the rolling calibrated confidence the service alerts on."""
    return np.array([peak_confidence(M.apply_temperature(s.frame_logits, temperature), window, min_frames)
                     for s in scored])


def scan_scores(scored: list[Scored], temperature: float) -> np.ndarray:
    """Each clip's whole-video p_fake as `streamdetect scan` reports it: the mean of its calibrated per-frame p_fake."""
    return np.array([M.apply_temperature(s.frame_logits, temperature).mean() for s in scored])


def analyse(scored: list[Scored], temperature: float | None = None, threshold: float | None = None,
            target_fpr: float = 0.05, window: int = 20, min_frames: int = 10) -> dict:
    """Metrics for scored clips. temperature/threshold None: fit them here (on these clips) and say so."""
    fl, fy = calibration_frames(scored)
    result = {"n_items": len(scored)}
    fitted = temperature is None
    if fitted:
        temperature = M.fit_temperature(fl, fy)  # margins are fake logits against a real logit of 0
    p_raw, p_cal = M.apply_temperature(fl, 1.0), M.apply_temperature(fl, temperature)
    result["calibration"] = {
        "temperature": round(float(temperature), 4), "fitted_here": fitted,
        "nll_before": round(M.nll(fy, p_raw), 4), "nll_after": round(M.nll(fy, p_cal), 4),
        "ece_before": round(M.expected_calibration_error(fy, p_raw), 4),
        "ece_after": round(M.expected_calibration_error(fy, p_cal), 4)}

    y = np.array([s.label for s in scored])
    frame_p = [M.apply_temperature(s.frame_logits, temperature) for s in scored]
    v = video_scores(scored, temperature, window, min_frames)
    v_mean = scan_scores(scored, temperature)
    groups = np.array([s.group for s in scored])
    families = np.array([s.family for s in scored])
    real = y == 0
    world = groups != "SBI"
    chose = threshold is None
    if chose:
        threshold = M.threshold_at_fpr(y[real], v[real], target_fpr) if real.any() else 0.5
    result["threshold"] = {"value": float(threshold), "chosen_here": chose, "target_fpr": target_fpr,
                           "rule": f"alert when the rolling {window}-frame mean of calibrated p_fake reaches it"}
    f_all = np.concatenate([p for p, s in zip(frame_p, scored) if s.group != "SBI"])
    f_y = np.concatenate([np.full(len(s.frame_logits), s.label) for s in scored if s.group != "SBI"])
    result["frame"] = M.summary(f_y, f_all, threshold)
    result["video"] = M.summary(y[world], v[world], threshold)
    result["video_mean"] = M.summary(y[world], v_mean[world], threshold)
    result["video_with_sbi"] = M.summary(y, v, threshold)
    result["by_method"] = {}
    for g in sorted(set(groups[~real])):
        m = groups == g
        ci = M.bootstrap_auc_ci(y[real | m], v[real | m])
        result["by_method"][g] = {"n": int(m.sum()), "auc_vs_real": _auc(y[real | m], v[real | m]),
                                  "auc_ci95": [round(ci[0], 4), round(ci[1], 4)],
                                  "recall": _alert_rate(v[m], threshold),
                                  "mean_score": round(float(v[m].mean()), 4)}
    result["by_family"] = {}
    for fam in CATEGORIES[1:]:  # every category of fake
        m = (families == fam) & world
        if m.any():
            result["by_family"][fam] = {"n": int(m.sum()), "auc_vs_real": _auc(y[real | m], v[real | m]),
                                        "recall": _alert_rate(v[m], threshold)}
    result["by_length"] = {}
    videos = [s for s in scored if s.kind == "video" and s.group != "SBI"]
    for n in LENGTHS:
        have = [s for s in videos if n in s.length_logits]
        ly = np.array([s.label for s in have])
        if len(set(ly.tolist())) == 2:
            lp = M.apply_temperature(np.array([s.length_logits[n] for s in have]), temperature)
            result["by_length"][n] = M.summary(ly, lp, threshold)
    result["real_false_positive_rate"] = _alert_rate(v[real], threshold) if real.any() else None
    return result


def _auc(y, p):
    a = M.roc_auc(y, p)
    return None if np.isnan(a) else round(float(a), 4)


def write_report(result: dict, scored: list[Scored], out: Path, title: str) -> Path:
    from streamdetect.training import plots

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    t, w = result["calibration"]["temperature"], result["window"]
    y = np.array([s.label for s in scored])
    v = video_scores(scored, t, w, result["min_frames"])
    groups = np.array([s.group for s in scored])
    real = y == 0
    curves = {"all fakes (no SBI)": (y[groups != "SBI"], v[groups != "SBI"])}
    for g in sorted(set(groups[~real])):
        m = real | (groups == g)
        curves[g] = (y[m], v[m])
    thr = result["threshold"]["value"]
    try:
        plots.plot_roc(curves, out / "roc.png", f"{title}: video-level ROC")
        plots.plot_score_histograms(y, v, thr, out / "scores.png", f"{title}: video alert scores (SBI included)")
        if result["by_length"]:
            plots.plot_by_length({int(k): r for k, r in result["by_length"].items()}, out / "by_length.png")
    except MissingDependencyError as exc:  # the numbers below are the report; the figures are a convenience
        log.warning("no plots: %s", exc)
    lines = [f"# {title}", "", "| level | n | AUC | EER | acc | precision | recall | F1 |", "|---|---|---|---|---|---|---|---|"]
    for level in ("frame", "video", "video_mean", "video_with_sbi"):
        r = result[level]
        lines.append(f"| {level} | {r['n']} | {r['auc']} | {r['eer']} | {r['accuracy']} | {r['precision']} | "
                     f"{r['recall']} | {r['f1']} |")
    lines += ["", "| sequence length | n | AUC | acc | precision | recall | F1 |", "|---|---|---|---|---|---|---|"]
    for n, r in result["by_length"].items():
        lines.append(f"| {n} | {r['n']} | {r['auc']} | {r['accuracy']} | {r['precision']} | {r['recall']} | {r['f1']} |")
    lines += ["", "| fakes | n | AUC vs real | recall at threshold |", "|---|---|---|---|"]
    for g, r in {**result["by_family"], **result["by_method"]}.items():
        lines.append(f"| {g} | {r['n']} | {r['auc_vs_real']} | {r['recall']} |")
    c, th = result["calibration"], result["threshold"]
    lines += ["", f"video: peak rolling {w}-frame mean (the service's alert score); video_mean: mean of all frames.",
              f"Temperature {c['temperature']} (NLL {c['nll_before']} -> {c['nll_after']}, ECE {c['ece_before']} "
              f"-> {c['ece_after']}); threshold {th['value']:.4f} ({th['rule']}; target FPR {th['target_fpr']}); "
              f"false-positive rate on real items {result['real_false_positive_rate']}."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"


def evaluate(checkpoint: str | Path, data, out: str | Path, keys: list[str] | None = None, window: int = 20,
             min_frames: int = 10,
             sbi: bool = True, calibrate: bool = True, target_fpr: float = 0.05, write_card: str | Path | None = None,
             half: bool = False, progress: bool = True) -> dict:
    """Score a checkpoint on prepared data (optionally only the items in `keys`, e.g. a run's val split).
    calibrate=True fits temperature and threshold here; False uses the card's. write_card: save a copy of the
    checkpoint with the fitted temperature, threshold and these metrics in its card (half: fp16 weights)."""
    model = load_checkpoint(checkpoint)  # scoring reads raw logit margins: the card's temperature is not applied
    clips = load_clips(data, model.card.config.input_size, model.card.config.crop)
    if keys is not None:
        wanted = set(keys)
        clips = [c for c in clips if c.key in wanted]
    scored = score_clips(model, clips, window=window, sbi=sbi, progress=progress)
    card = model.card
    result = analyse(scored, None if calibrate else card.temperature, None if calibrate else card.threshold,
                     target_fpr, window, min_frames)
    result["checkpoint"] = str(checkpoint)
    result["window"], result["min_frames"] = window, min_frames
    write_report(result, scored, Path(out), card.name)
    if write_card:
        summary = {k: result[k] for k in ("frame", "video", "by_family", "by_method", "by_length")}
        new = card.with_updates(temperature=result["calibration"]["temperature"],
                                threshold=result["threshold"]["value"], metrics=summary)
        save_checkpoint(model, write_card, new, half=half)
    return result
