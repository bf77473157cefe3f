#!/usr/bin/env bash
# Reproduce the bundled default model and its ablations (README "Model quality"), on CPU or GPU.
#   bash tools/train_default.sh [PREPARED_DIR] [RUNS_DIR]
# Each ablation trains ABLATION_STEPS with the same recipe (examples/train_default.yaml); the default model then
# continues the ImageNet-pretrained run to the recipe's full length (same seed-per-step batches as one long run).
# Package it afterwards: python tools/package_default.py RUNS_DIR/pretrained PREPARED_DIR
set -euo pipefail
DATA=${1:-prepared/shared}
RUNS=${2:-runs}
ABLATION_STEPS=${ABLATION_STEPS:-600}
CFG=examples/train_default.yaml
[ -f "$DATA/manifest.jsonl" ] || streamdetect prepare ../shared/data "$DATA" --layout shared --frames 120
streamdetect train --config $CFG --data "$DATA" --out "$RUNS/pretrained" --steps "$ABLATION_STEPS"
cp -r "$RUNS/pretrained" "$RUNS/pretrained-at-$ABLATION_STEPS"
streamdetect train --config $CFG --data "$DATA" --out "$RUNS/scratch" --steps "$ABLATION_STEPS" --set pretrained=false
streamdetect train --config $CFG --data "$DATA" --out "$RUNS/expression" --steps "$ABLATION_STEPS" --set model.expression=true
streamdetect train --config $CFG --data "$DATA" --out "$RUNS/pretrained" --resume
