"""Would a second view of the face help? A whole-face model and a model of another crop (e.g. `--crop mouth`, the
lower face that lip-sync generators regenerate), averaged per frame, on the same prepared clips.

Both models score the clips of their own crop (prepared twice from the same videos and frames: same keys, same
detections); their per-frame logit margins are averaged with weight w on the second view, and `evaluate`'s
analysis (temperature, the service's rolling-window video score) runs on the mix, for w from 0 to 1:
    streamdetect prepare examples/manifests/round5_swap.tsv prepared/round5_swap_mouth --media media/round5 \\
        --frames 120 --crop mouth
    python tools/view_ensemble.py runs/plus_round4/last.safetensors runs/mouth_plus_round4/last.safetensors \\
        --data prepared/round5_swap prepared/round5_anim --second prepared/round5_swap_mouth prepared/round5_anim_mouth
"""

from __future__ import annotations

import argparse
import json

from streamdetect.model import load_checkpoint
from streamdetect.training.data import load_clips
from streamdetect.training.evaluate import Scored, analyse, score_clips


def scored(checkpoint, data) -> dict[str, Scored]:
    model = load_checkpoint(checkpoint)
    clips = load_clips(data, model.card.config.input_size, model.card.config.crop)
    return {s.key: s for s in score_clips(model, clips, sbi=False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("first", help="checkpoint of the first view (the whole-face model)")
    ap.add_argument("second", help="checkpoint of the second view")
    ap.add_argument("--data", nargs="+", required=True, help="prepared folders in the first model's crop")
    ap.add_argument("--second-data", "--second", nargs="+", required=True, help="the same items in the second's")
    ap.add_argument("--weights", default="0,0.25,0.5,0.75,1", help="weights of the second view to report")
    args = ap.parse_args()
    a, b = scored(args.first, args.data), scored(args.second, args.second_data)
    keys = sorted(set(a) & set(b))
    if not keys:
        raise SystemExit("the two prepared sets share no item keys: prepare the same manifest with both crops")
    report = {}
    for w in map(float, args.weights.split(",")):
        mixed = []
        for k in keys:
            n = min(len(a[k].frame_logits), len(b[k].frame_logits))
            frames = (1 - w) * a[k].frame_logits[:n] + w * b[k].frame_logits[:n]
            mixed.append(Scored(k, a[k].label, a[k].group, a[k].family, a[k].kind, frames, {}))
        r = analyse(mixed)
        report[w] = {"video_auc": r["video"]["auc"], "frame_auc": r["frame"]["auc"],
                     "by_family": {f: v["auc_vs_real"] for f, v in r["by_family"].items()},
                     "by_method": {g: v["auc_vs_real"] for g, v in r["by_method"].items()}}
        print(f"second view weight {w:.2f}: video AUC {r['video']['auc']:.3f}  "
              + "  ".join(f"{f} {v}" for f, v in report[w]["by_family"].items()))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
