"""Does the whole-video score `scan` reports (the mean of per-frame calibrated p_fake) rank clips as well as other
ways of pooling the same frames? Paired AUC differences on clips the model never saw.

    python tools/video_pooling.py CHECKPOINT --data prepared/round7 [more prepared dirs]

Frames are scored as `evaluate` scores them (the service path, at most 150 per clip, no self-blended fakes); the
temperature is fitted on these frames. Each pooling is compared with scan's mean by a paired, class-stratified
bootstrap of the AUC difference (streamdetect.training.metrics.paired_auc_difference).
"""

import argparse

import numpy as np

from streamdetect.model import load_checkpoint
from streamdetect.scoring import peak_confidence
from streamdetect.training import metrics as M
from streamdetect.training.data import load_clips
from streamdetect.training.evaluate import calibration_frames, scan_scores, score_clips


def _trimmed(x: np.ndarray, cut: float = 0.1) -> float:
    x = np.sort(x)
    lo = int(cut * len(x))
    return float(x[lo:max(lo + 1, len(x) - lo)].mean())


def _quarter(x: np.ndarray, top: bool) -> float:
    x, k = np.sort(x), max(1, len(x) // 4)
    return float((x[-k:] if top else x[:k]).mean())


SCAN = "mean p_fake (scan)"  # evaluate.scan_scores, the baseline
POOLINGS = {  # the alternatives: name -> (per-frame logit margins, calibrated p_fake) -> video score
    "mean logit": lambda l, p: l.mean(),
    "median logit": lambda l, p: np.median(l),
    "10 % trimmed mean logit": lambda l, p: _trimmed(l),
    "peak rolling 20-frame mean (alert)": lambda l, p: peak_confidence(p, 20, 10),
    "mean of the top quarter": lambda l, p: _quarter(p, True),
    "mean of the bottom quarter": lambda l, p: _quarter(p, False),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", nargs="+", required=True, help="prepared folders the model never trained on")
    ap.add_argument("--reps", type=int, default=2000)
    args = ap.parse_args()
    model = load_checkpoint(args.checkpoint).eval()
    scored = score_clips(model, load_clips(args.data, model.card.config.input_size, model.card.config.crop), sbi=False)
    t = M.fit_temperature(*calibration_frames(scored))
    y = np.array([s.label for s in scored])
    videos = {SCAN: scan_scores(scored, t)} | {
        name: np.array([pool(s.frame_logits, M.apply_temperature(s.frame_logits, t)) for s in scored])
        for name, pool in POOLINGS.items()}
    base = videos[SCAN]
    print(f"{(y == 1).sum()} fakes, {(y == 0).sum()} reals, temperature {t:.2f}")
    for name, v in videos.items():
        line = f"{name:36} AUC {M.roc_auc(y, v):.3f}"
        if v is not base:
            d = M.paired_auc_difference(y, base, v, reps=args.reps)
            line += f"  vs scan {d['diff']:+.3f} (95 % CI {d['ci'][0]:+.3f} to {d['ci'][1]:+.3f})"
        print(line)


if __name__ == "__main__":
    main()
