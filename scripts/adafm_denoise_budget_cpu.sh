#!/usr/bin/env bash
# Does the AdaFM-vs-baseline gap at sigma 75 shrink with the adaptation budget? The same two runs as in
# adafm_denoise_cpu.sh (AdaFM layers only) and adafm_denoise_baselines_cpu.sh (all layers), both from the
# zoo model's sigma-15 basic model, with STEPS (default 1500) instead of 400 steps; both on CBSD68 at 75.
set -euo pipefail
cd "$(dirname "$0")/.."
RK=.venv/bin/restorekit
STEPS=${STEPS:-1500}
CPU="--set model.args.features=32 --set model.args.blocks=8 --set data.train.patch=48 --set train.optimizer.lr=5e-4 --set threads=1"
COSINE="train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}"
BASE=runs/adafm_denoise_basic_s15_from_zoo/final.safetensors   # written by adafm_denoise_baselines_cpu.sh
COMMON="--set model.init=$BASE --set train.steps=$STEPS --set data.val.every=$STEPS --set train.checkpoint_every=$STEPS --progress off"
$RK train configs/adafm/denoise_adafm_s15_s75.yaml --out runs/adafm_denoise_s15_s75_steps$STEPS $CPU --set "$COSINE" $COMMON &
$RK train configs/adafm/denoise_basic_s15.yaml --out runs/adafm_denoise_baseline_s75_steps$STEPS $CPU --set "$COSINE" $COMMON \
    --set "data.train.levels=[noise:sigma=75]" --set "data.val.levels=[noise:sigma=75]" &
wait
$RK eval --model runs/adafm_denoise_s15_s75_steps$STEPS/final.safetensors --dataset CBSD68 --task denoise --level 75 \
    --strength 1 --json outputs/adafm/budget_adafm_s75_steps$STEPS.json
$RK eval --model runs/adafm_denoise_baseline_s75_steps$STEPS/final.safetensors --dataset CBSD68 --task denoise \
    --level 75 --json outputs/adafm/budget_baseline_s75_steps$STEPS.json

# The learning-rate check quoted in docs/BENCHMARKS.md (AdaFM stage at lr 2e-3 instead of 5e-4, 400 steps;
# its validation PSNR at sigma 75 is in the run's log.jsonl). Run with LR_CHECK=1.
if [ "${LR_CHECK:-0}" = 1 ]; then
    $RK train configs/adafm/denoise_adafm_s15_s75.yaml --out runs/adafm_denoise_s15_s75_lr2e-3 \
        ${CPU/lr=5e-4/lr=2e-3} --set "$COSINE" --set model.init=$BASE --set train.steps=400 \
        --set data.val.every=200 --set train.checkpoint_every=400 --progress off
fi
