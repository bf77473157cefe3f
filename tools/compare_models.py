"""Is model B better than model A on clips neither saw? Paired video AUC with a bootstrap interval of the difference.

    python tools/compare_models.py A.safetensors B.safetensors [C ...] --data prepared/round7 [more prepared dirs]

Every model scores the same clips with `evaluate`'s video score (peak rolling 20-frame mean of p_fake; with
`--score scan`, the whole-video p_fake `scan` reports, the mean over frames), temperature fitted on these clips as
`evaluate` does, no self-blended fakes; the models must share crop style and input size,
since the prepared folders hold one crop style. The interval resamples reals and fakes separately, the same draw for
every model, so it is the interval of the *difference*. With few reals one clip can decide the sign: the "drop one
real" line gives the range of the difference when any single real is left out, and the reals each model ranks
highest are listed by name.
"""

import argparse

import numpy as np

from streamdetect.model import load_checkpoint
from streamdetect.training import metrics as M
from streamdetect.training.data import load_clips
from streamdetect.training.evaluate import calibration_frames, scan_scores, score_clips, video_scores

SCORES = {"alert": (video_scores, "peak rolling 20-frame mean"), "scan": (scan_scores, "scan's mean p_fake")}


def scores_of(checkpoint: str, data: list[str], score: str = "alert") -> tuple[list[str], np.ndarray, np.ndarray]:
    model = load_checkpoint(checkpoint).eval()
    clips = load_clips(data, model.card.config.input_size, model.card.config.crop)
    scored = sorted(score_clips(model, clips, sbi=False), key=lambda s: s.key)
    t = M.fit_temperature(*calibration_frames(scored))
    return [s.key for s in scored], np.array([s.label for s in scored]), SCORES[score][0](scored, t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="the first is the baseline the others are compared with")
    ap.add_argument("--data", nargs="+", required=True, help="prepared folders none of the models trained on")
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--score", choices=list(SCORES), default="alert",
                    help="video score: the alert score evaluate reports, or scan's whole-video p_fake")
    args = ap.parse_args()
    if len(args.checkpoints) < 2:
        ap.error("give at least two checkpoints: a baseline and one to compare with it")
    runs = [scores_of(c, args.data, args.score) for c in args.checkpoints]  # the same folders: the same clips in order
    keys, y, base = runs[0]
    real, fake = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    print(f"{len(fake)} fakes, {len(real)} reals; video AUC ({SCORES[args.score][1]})")
    for n, (name, (_, _, v)) in enumerate(zip(args.checkpoints, runs)):
        line = f"{name}: {M.roc_auc(y, v):.3f}"
        if n:  # the first is the baseline
            d = M.paired_auc_difference(y, base, v, reps=args.reps)
            line += (f"  vs baseline {d['diff']:+.3f} (95 % CI {d['ci'][0]:+.3f} to {d['ci'][1]:+.3f}; "
                     f"drop one real: {d['drop_one_real'][0]:+.3f} to {d['drop_one_real'][1]:+.3f})")
        top = sorted(real, key=lambda r: -v[r])[:3]
        print(line + "\n    highest reals: " + ", ".join(
            f"{keys[r]} (above {np.mean(v[fake] < v[r]):.0%} of fakes)" for r in top))


if __name__ == "__main__":
    main()
