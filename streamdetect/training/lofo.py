"""Leave-one-family-out: how a recipe does on generators and datasets it has never seen.

Each fold trains the recipe with whole generator families or source datasets held out (`TrainConfig.holdout`),
then scores every held-out fake against every real the fold never trained on (its held-out reals and its
validation reals), with the service's video score (peak rolling W-frame mean of p_fake). Per held-out family:
video AUC with a 95 % bootstrap interval. An identity split of the same families would measure memorised
generators; this measures the thing users meet: a generator nobody trained on.

Folds file (YAML): a mapping fold name -> list of families/sources to hold out, e.g.
    faceswap+thb-audio: [FaceForensics++, Hallo, Hallo2, Hallo3, EmoPortraits, AniPortrait-audio, real-TalkingHeadBench]
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from streamdetect.errors import DatasetError
from streamdetect.training import metrics as M
from streamdetect.training.config import TrainConfig

log = logging.getLogger(__name__)
ALL = "(all held-out fakes)"


def load_folds(path) -> dict[str, tuple[str, ...]]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"folds file {path} does not exist; see examples/lofo_folds.yaml")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, list) and v for v in raw.values()):
        raise DatasetError(f"{path}: expected a mapping of fold name -> non-empty list of families/sources to "
                           f"hold out, e.g.  thb: [Hallo, Hallo2]")
    return {str(k): tuple(map(str, v)) for k, v in raw.items()}


def family_aucs(scored, window: int = 20, min_frames: int = 10) -> dict:
    """{family: {n_fake, n_real, auc, ci95}}: each fake family of `scored` against all its reals."""
    from streamdetect.scoring import peak_confidence

    score = np.array([peak_confidence(M.apply_temperature(s.frame_logits, 1.0), window, min_frames) for s in scored])
    y = np.array([s.label for s in scored])
    groups = np.array([s.group for s in scored])
    real = y == 0
    if real.all():
        raise DatasetError("the fold holds out reals only (one class only), so there is no unseen fake to score; "
                           "hold out at least one fake family (a generator name) in the fold")
    if not real.any():
        raise DatasetError("the fold has no unseen reals to score its held-out fakes against; hold out a real "
                           "collection too or keep a validation split (val_fraction > 0)")
    kinds = np.array([s.kind for s in scored])
    out = {}
    for g in [*sorted(set(groups[~real])), ALL]:
        fake = ~real if g == ALL else groups == g
        # Fakes are compared with reals of their own kind (videos with videos): a photo is an easier, other
        # question, and mixing them would measure "video or photo" as much as "real or fake".
        same = real & np.isin(kinds, np.unique(kinds[fake]))
        m = fake | (same if same.any() else real)
        lo, hi = M.bootstrap_auc_ci(y[m], score[m])
        out[g] = {"n_fake": int(fake.sum()), "n_real": int((m & real).sum()),
                  "auc": round(float(M.roc_auc(y[m], score[m])), 4), "ci95": [round(lo, 4), round(hi, 4)]}
    return out


def score_fold(run: Path, window: int = 20, progress: bool = True) -> dict:
    """Score the held-out families of a finished fold run (its last checkpoint: no selection on them)."""
    import yaml

    from streamdetect.model import load_checkpoint
    from streamdetect.training.data import load_clips
    from streamdetect.training.evaluate import score_clips

    split = json.loads((run / "split.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    model = load_checkpoint(run / "last.safetensors")
    wanted = set(split["holdout_eval"])
    clips = [c for c in load_clips(cfg["data"], model.card.config.input_size, model.card.config.crop)
             if c.key in wanted]
    # family_aucs compares fakes with reals of their own kind: reals of another kind need no scoring.
    fake_kinds = {c.kind for c in clips if c.label}
    clips = [c for c in clips if c.label or c.kind in fake_kinds]
    scored = score_clips(model, clips, window=window, sbi=False, progress=progress)
    return family_aucs(scored, window)


def run_lofo(cfg: TrainConfig, folds: dict[str, tuple[str, ...]], out, progress: bool = True) -> dict:
    """Train (resumably) and score every fold; writes lofo.json, lofo.md and lofo.png into `out`."""
    from streamdetect.training.data import load_clips
    from streamdetect.training.train import train

    clips = load_clips(cfg.data, cfg.model.input_size, cfg.model.crop)
    for name, holdout in folds.items():  # every fold checked before hours of training start
        check_fold(clips, name, holdout)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, holdout in folds.items():
        run = out / name
        fold_cfg = dataclasses.replace(cfg, holdout=holdout, out=str(run), val_every=max(1, cfg.steps))
        if not (run / "last.safetensors").exists() or _step_of(run) < cfg.steps:
            log.info("fold %s: training with %s held out", name, ", ".join(holdout))
            train(fold_cfg, resume=True, progress=progress)
        results[name] = {"holdout": list(holdout), "families": score_fold(run, progress=progress)}
        (out / "lofo.json").write_text(json.dumps(results, indent=1))
    write_lofo_report(results, out)
    return results


def check_fold(clips, name: str, holdout) -> None:
    """A fold must hold out at least one fake family that exists in the data."""
    from streamdetect.training.data import check_holdout

    check_holdout(clips, holdout)
    held = [c for c in clips if c.held_out_by(holdout)]
    if not any(c.label for c in held):
        raise DatasetError(f"fold {name!r} holds out {', '.join(holdout)}: real items only (one class only), so "
                           f"no unseen fake could be scored; add at least one fake family (a generator name)")


def _step_of(run: Path) -> int:
    import torch

    state = run / "last_state.pt"
    return int(torch.load(state, weights_only=True, map_location="cpu")["step"]) if state.exists() else 0


def write_lofo_report(results: dict, out: Path) -> Path:
    lines = ["| fold (held out) | family | fakes | unseen reals | video AUC | 95 % CI |", "|---|---|---|---|---|---|"]
    for fold, r in results.items():
        for fam, v in r["families"].items():
            lines.append(f"| {fold} | {fam} | {v['n_fake']} | {v['n_real']} | {v['auc']:.3f} | "
                         f"{v['ci95'][0]:.2f}–{v['ci95'][1]:.2f} |")
    (out / "lofo.md").write_text("\n".join(lines) + "\n")
    try:
        plot_lofo(results, out / "lofo.png")
    except Exception as exc:  # noqa: BLE001 - a plot is a convenience; the table is written
        log.warning("no LOFO plot: %s", exc)
    return out / "lofo.md"


def plot_lofo(results: dict, path) -> Path:
    from streamdetect.training.plots import _figure, _save

    rows = [(f"{fam} ({fold})", v) for fold, r in results.items() for fam, v in r["families"].items()]
    fig = _figure((7, 0.35 * len(rows) + 1.2))
    ax = fig.subplots()
    ys = np.arange(len(rows))[::-1]
    auc = np.array([v["auc"] for _, v in rows])
    lo = auc - np.array([v["ci95"][0] for _, v in rows])
    hi = np.array([v["ci95"][1] for _, v in rows]) - auc
    ax.barh(ys, auc, xerr=[lo, hi], color="#4c78a8", capsize=3)
    ax.axvline(0.5, color="grey", lw=1, ls="--")
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("video AUC on the held-out family (95 % bootstrap CI)")
    ax.set_title("Leave-one-family-out")
    return _save(fig, path)
