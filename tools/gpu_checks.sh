#!/bin/bash
# The GPU checks behind README "On a GPU": CUDA parity tests, encoder throughput on the torch CUDA backend, FP32 vs
# FP16, a short mixed-precision training run on CUDA and its evaluation.
#   bash tools/gpu_checks.sh PREPARED_DIR [OUT_DIR]
# Needs a CUDA device and `pip install -e '.[train,dev]'`. PREPARED_DIR: any `streamdetect prepare` folder with
# reals and fakes (the figures in the README came from a 20-clip subset of prepared/shared and prepared/round2).
# Pass STEPS=N to change the training run's length (default 150); H264=0 if PyAV is missing.
set -u
data=${1:?usage: bash tools/gpu_checks.sh PREPARED_DIR [OUT_DIR]}
out=${2:-gpu-checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
exec > >(tee -a "$out/gpu_checks.log") 2>&1
step() { echo; echo "=== $* ($(date +%T))"; }
model=$(python3 -c "from streamdetect.weights import default_model_path; print(default_model_path())")

step hardware
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1

step "pytest -m gpu"
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_engines.py

step "encoder throughput, torch CUDA backend (FP16 + channels_last)"
python3 -m streamdetect bench --backend torch --model "$model" --batch 1 --batch 8 --batch 64 --batch 256 \
  --batch 1024 --json "$out/bench_torch_cuda.json"

step "encoder FP32 (TF32 convolutions) vs FP16 at batch 256"
python3 - "$model" <<'PY'
import sys, time
import numpy as np
from streamdetect.engines import load_engine
crops = np.random.default_rng(0).integers(0, 256, (256, 112, 112, 3), dtype=np.uint8)
for fp16 in (False, True):
    engine = load_engine(sys.argv[1], backend="torch", device="cuda", fp16=fp16)
    for _ in range(3):
        engine.encode(crops)
    start, calls = time.perf_counter(), 30
    for _ in range(calls):
        engine.encode(crops)
    dt = (time.perf_counter() - start) / calls
    print(f"fp16={fp16}: {dt * 1e3:.2f} ms per 256 faces, {256 / dt:.0f} faces/s")
PY

step "train on CUDA with mixed precision (the default recipe, random init)"
python3 -m streamdetect train --config examples/train_default.yaml --data "$data" --out "$out/run" \
  --steps "${STEPS:-150}" --device cuda --set pretrained=false --set augment.h264="${H264:-0.25}" --set amp=true \
  --set val_every=75 --set threads="$(nproc)"

step "evaluate the short run (scores on the CPU: evaluate does not use the GPU)"
python3 -m streamdetect evaluate "$out/run/last.safetensors" "$data" --no-sbi --out "$out/evaluation"
