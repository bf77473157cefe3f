"""Package the default model: the last checkpoint of a run (the recipe does no model selection) -> fp16 ->
calibrated on its validation split -> streamdetect/weights/default.safetensors, with the evaluation report and
plots in docs/model/; then exported beside it to streamdetect/weights/default/ (ONNX graphs with the card inside,
validated against torch, and checkpoint.json naming the safetensors' SHA-256), which is what serving runs: no torch
and no export step on a user's machine.

    python tools/package_default.py RUN_DIR PREPARED_DIR [PREPARED_DIR ...] [--name NAME]
    python tools/package_default.py --export-only      # re-export the shipped checkpoint (e.g. after an export change)

The card's threshold, temperature and metrics are measured on the fp16 weights that ship, so the card describes
exactly the file users get.
"""

import argparse
import json
import tempfile
from pathlib import Path

from streamdetect.loading import export_checkpoint

TRAINING_DATA = ("shared research media (not redistributed): FaceForensics++ c40 (originals, Deepfakes, Face2Face, "
                 "FaceSwap, NeuralTextures), real talking-head clips (VoxCeleb2, GRID, LRS2, MEAD, ...), real photos "
                 "(FFHQ, public figures), plus self-blended fakes of every real item; talking-head, lip-sync and "
                 "face-swap generator outputs with reals of their sources from public repositories "
                 "(examples/manifests/round2-round5: Hallo 1/2/3, EMOPortraits, AniPortrait, LivePortrait, EchoMimic "
                 "v1/v3, CyberHost, AniTalker, FLOAT, GeneFace, SyncTalk, ACTalker, FantasyTalking, KeySync, KeyFace, "
                 "DiffDub, CanonSwap, roop, ReSyncer, StyleSync, StyleSwap, OmniSync, DINet, PlayingForYou, "
                 "Real3DPortrait, RealTalk); StyleGAN2 photos only in validation; validation held out by identity "
                 "(see streamdetect/weights/README.md)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("data", nargs="*")
    ap.add_argument("--export-only", action="store_true", help="only export --out to its sibling folder")
    ap.add_argument("--name", default="streamdetect-lite0-mix-v3")
    ap.add_argument("--checkpoint", default="last.safetensors", help="which checkpoint of the run ships")
    ap.add_argument("--training-data", default=TRAINING_DATA)
    ap.add_argument("--out", default="streamdetect/weights/default.safetensors")
    ap.add_argument("--report", default="docs/model")
    args = ap.parse_args()
    if not args.export_only:
        if not (args.run and args.data):
            ap.error("RUN_DIR and PREPARED_DIR are required (or --export-only)")
        package(args)
    out = Path(args.out)
    for report in export_checkpoint(out, out.with_suffix("")):
        print(f"validated {report}")
    print(f"exported {out} to {out.with_suffix('')}/: " + ", ".join(
        f"{f.name} {f.stat().st_size / 1e6:.1f} MB" for f in sorted(out.with_suffix("").iterdir())))


def package(args) -> None:
    from streamdetect.model import load_checkpoint, save_checkpoint
    from streamdetect.training.evaluate import evaluate

    run = Path(args.run)
    model = load_checkpoint(run / args.checkpoint)
    model.card = model.card.with_updates(name=args.name, training_data=args.training_data)
    val = json.loads((run / "split.json").read_text())["val"]
    with tempfile.TemporaryDirectory() as tmp:
        half = save_checkpoint(model, Path(tmp) / "half.safetensors", half=True)
        result = evaluate(half, args.data, args.report, keys=val, write_card=args.out, half=True)
    print(json.dumps({k: result[k] for k in ("video", "frame", "by_family", "calibration", "threshold")}, indent=1))


if __name__ == "__main__":
    main()
