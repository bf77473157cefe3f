"""Package the default model: the best checkpoint of a run -> fp16 -> calibrated on its validation split ->
streamdetect/weights/default.safetensors, with the evaluation report and plots in docs/model/.

    python tools/package_default.py RUN_DIR PREPARED_DIR [--name NAME]

The card's threshold, temperature and metrics are measured on the fp16 weights that ship, so the card describes
exactly the file users get.
"""

import argparse
import json
import tempfile
from pathlib import Path

from streamdetect.model import load_checkpoint, save_checkpoint
from streamdetect.training.evaluate import evaluate

TRAINING_DATA = ("../shared/data research media (not redistributed): FaceForensics++ c40 (originals, Deepfakes, "
                 "Face2Face, FaceSwap, NeuralTextures), real talking-head clips (VoxCeleb2, GRID, LRS2, MEAD, ...), "
                 "real photos (FFHQ, public figures), StyleGAN2 faces, plus self-blended fakes of every real item; "
                 "validation held out by identity (see streamdetect/weights/README.md)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--name", default="streamdetect-lite0-sbi-v1")
    ap.add_argument("--out", default="streamdetect/weights/default.safetensors")
    ap.add_argument("--report", default="docs/model")
    args = ap.parse_args()
    run = Path(args.run)
    model = load_checkpoint(run / "best.safetensors")
    model.card = model.card.with_updates(name=args.name, training_data=TRAINING_DATA)
    val = json.loads((run / "split.json").read_text())["val"]
    with tempfile.TemporaryDirectory() as tmp:
        half = save_checkpoint(model, Path(tmp) / "half.safetensors", half=True)
        result = evaluate(half, [args.data], args.report, keys=val, write_card=args.out, half=True)
    print(json.dumps({k: result[k] for k in ("video", "frame", "by_family", "calibration", "threshold")}, indent=1))


if __name__ == "__main__":
    main()
