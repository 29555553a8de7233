#!/usr/bin/env bash
# Same-budget per-level baselines for the second zoo denoiser (issue 19 item 4; scripts/adafm_denoise_long_cpu.sh):
# the AdaFM model cost 12,000 steps of the basic model at sigma 15 + 3,000 steps of 3x3 AdaFM layers at sigma 75.
# Each baseline gets the same budget: it starts from that run's sigma-15 basic model
# (runs/adafm_denoise_long/stages/basic.safetensors) and trains ALL its layers for 3,000 steps at its own sigma,
# with the AdaFM stage's data, patch, batch, lr, cosine schedule and EMA. Then CBSD68 at its sigma (all 68 images,
# float noise, seed 0: the same inputs as the zoo model's grid). SIGMAS default: every sigma of the grid, 15 min each
# on one core (two jobs with different SIGMAS and THREADS=1 share the 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
RK=.venv/bin/restorekit
SIGMAS=${SIGMAS:-"15 25 35 45 50 60 75"}
STEPS=${STEPS:-3000}
BASIC=runs/adafm_denoise_long/stages/basic.safetensors
CPU="--set model.args.features=32 --set model.args.blocks=8 --set data.train.patch=48 --set train.optimizer.lr=5e-4"
COSINE="train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}"
mkdir -p outputs/adafm/long
for SIGMA in $SIGMAS; do
    OUTDIR=runs/adafm_denoise_long_baseline_s$SIGMA
    [ -f "$OUTDIR/final.safetensors" ] || $RK train configs/adafm/denoise_basic_s15.yaml --out "$OUTDIR" $CPU \
        --set model.init=$BASIC --set train.steps=$STEPS --set train.ema_decay=0.999 --set "$COSINE" \
        --set "data.train.levels=[noise:sigma=$SIGMA]" --set "data.val.levels=[noise:sigma=$SIGMA]" \
        --set data.val.every=$STEPS --set train.checkpoint_every=1000 --set threads=${THREADS:-2} \
        --progress off --resume
    $RK eval --model "$OUTDIR/final.safetensors" --dataset CBSD68 --task denoise --level "$SIGMA" \
        --json "outputs/adafm/long/baseline_s$SIGMA.json"
done
