"""Leave-one-family-out for the motion cues alone (streamdetect.faces.motion): what landmark dynamics are worth
on generator families they never saw, next to the CNN's LOFO table.

    python tools/motion_lofo.py examples/lofo_folds.yaml prepared/shared prepared/round2 --out runs/motion_lofo

Same folds, same unseen reals (held-out reals + the identity split's validation reals, split_seed 3, 15 %) as
`streamdetect lofo` with examples/train_default.yaml. Videos only (a photo has no motion). Video score: mean of
the window logits. Seconds on a CPU: the landmarks are already in the prepared folders.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamdetect.faces.motion import MotionHead, clip_windows
from streamdetect.training import metrics as M
from streamdetect.training.data import load_clips, split_clips
from streamdetect.training.lofo import load_folds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folds")
    ap.add_argument("data", nargs="+")
    ap.add_argument("--out", default="runs/motion_lofo")
    args = ap.parse_args()
    clips = [c for c in load_clips(args.data, 112, "box") if c.kind == "video" and c.frames >= 20]
    feats = {c.key: clip_windows(np.load(Path(c.folder) / "landmarks.npy")) for c in tqdm(clips, desc="motion")}
    results = {}
    for fold, holdout in load_folds(args.folds).items():
        train, val = split_clips(clips, 0.15, 3, holdout)
        test = [c for c in clips if c.held_out_by(holdout)] + [c for c in val if c.label == 0]
        x = np.concatenate([feats[c.key] for c in train])
        y = np.concatenate([np.full(len(feats[c.key]), c.label) for c in train])
        # Each generator family (and each real collection) weighs the same, then the classes are balanced.
        per_gen = {}
        for c in train:
            per_gen[c.generator] = per_gen.get(c.generator, 0) + len(feats[c.key])
        w = np.concatenate([np.full(len(feats[c.key]), 1.0 / per_gen[c.generator]) for c in train])
        for label in (0, 1):
            w[y == label] /= w[y == label].sum()
        head = MotionHead().fit(x, y.astype(float), sample_weight=w)
        score = np.array([head.logits(feats[c.key]).mean() for c in test])
        ty = np.array([c.label for c in test])
        gens = np.array([c.generator for c in test])
        fam = {}
        for g in sorted(set(gens[ty == 1])):
            m = (ty == 0) | (gens == g)
            lo, hi = M.bootstrap_auc_ci(ty[m], score[m])
            fam[g] = {"n_fake": int((gens == g).sum()), "n_real": int((ty == 0).sum()),
                      "auc": round(M.roc_auc(ty[m], score[m]), 4), "ci95": [round(lo, 4), round(hi, 4)]}
        results[fold] = {"holdout": list(holdout), "families": fam}
        print(fold, json.dumps(fam))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "motion_lofo.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
