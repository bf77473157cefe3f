"""Is model B better than model A on clips neither saw? Paired video AUC with a bootstrap interval of the difference.

    python tools/compare_models.py A.safetensors B.safetensors [C ...] --data prepared/round7 [more prepared dirs]

Every model scores the same clips with `evaluate`'s video score (peak rolling 20-frame mean of p_fake; with
`--score scan`, the whole-video p_fake `scan` reports, the mean over frames), temperature fitted on these clips as
`evaluate` does, no self-blended fakes. Models of different crop styles (box / aligned / mouth) can be compared on the
same clips: pass the folders of each style to --data (the same clips prepared once per style, e.g. prepared/round7
and prepared/round7_aligned); each model reads the folders holding its own style. The interval resamples reals and
fakes separately, the same draw for every model, so it is the interval of the *difference*. With few reals one clip
can decide the sign: the "drop one real" line gives the range of the difference when any single real is left out,
and the reals each model ranks highest are listed by name.
"""

import argparse

import numpy as np

from streamdetect.model import load_checkpoint
from streamdetect.training import metrics as M
from streamdetect.training.data import crop_style, load_clips
from streamdetect.training.evaluate import calibration_frames, scan_scores, score_clips, video_scores
from streamdetect.training.prepare import read_manifest

SCORES = {"alert": (video_scores, "peak rolling 20-frame mean"), "scan": (scan_scores, "scan's mean p_fake")}


def folders_of_style(data: list[str], crop: str) -> list[str]:
    """The prepared folders of `data` that hold `crop` crops (a folder holds one style; prepare records it per item)."""
    return [d for d in data if crop_style(read_manifest(d)[0]) == crop]


def scores_of(checkpoint: str, data: list[str], score: str = "alert") -> tuple[list[str], np.ndarray, np.ndarray]:
    model = load_checkpoint(checkpoint).eval()
    crop = model.card.config.crop
    folders = folders_of_style(data, crop)
    if not folders:
        raise SystemExit(f"{checkpoint} reads {crop!r} crops but no folder of --data holds them; prepare the same "
                         f"clips with: streamdetect prepare DATASET OUT --crop {crop}")
    clips = load_clips(folders, model.card.config.input_size, crop)
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
    runs = [scores_of(c, args.data, args.score) for c in args.checkpoints]  # each sorted by clip key
    keys, y, base = runs[0]
    for name, (other, _, _) in zip(args.checkpoints[1:], runs[1:]):
        if other != keys:  # folders of another crop style must hold the same clips
            raise SystemExit(f"{name} scored other clips than {args.checkpoints[0]} ({len(set(other) ^ set(keys))} "
                             "differ): prepare the same media for every crop style, with the same --frames")
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
