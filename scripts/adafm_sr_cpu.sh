#!/usr/bin/env bash
# The CPU recipe behind the zoo model `adafm_sr_x3_x4` (issue 19 item 2): AdaFM's SR slider x3 -> x4 with 5x5
# AdaFM filters (configs/adafm/sr_staged_x3_x4.yaml as one staged run), reduced to this 2-core CPU: 32 features x
# 8 blocks instead of 64 x 16, 72x72 HR patches instead of 96, Adam 5e-4 with a cosine schedule, STEPS1 (default
# 4,000) steps of the basic model at x3 and STEPS2 (default 1,000) of the AdaFM layers at x4 instead of 1e6 + 5e5,
# and global_skip=true (the bicubic input added to the output: residual learning as VDSR; NOT in the paper, a
# deviation for the budget as in adafm_dejpeg_cpu.sh: the same recipe without it, 3,000 + 600 steps, reached only
# 31.02 / 29.30 dB on Set5 at x3 / x4, bicubic +0.63 / +0.88 dB; outputs/adafm/sr_noskip/).
# Resumable (--resume). Then: into the zoo, lambda(scale) fitted on McMaster (disjoint from Set5/Set14/BSD100), and
# Set5 / Set14 at x3, x3.5, x4 beside bicubic (Y PSNR, border ceil(scale); x3.5: HR cropped to multiples of 7,
# MATLAB bicubic x1/3.5, rounded to 8 bits -- our protocol, the paper has no fractional scale).
set -euo pipefail
cd "$(dirname "$0")/.."
RK=.venv/bin/restorekit
STEPS1=${STEPS1:-4000}
STEPS2=${STEPS2:-1000}
OUT=runs/adafm_sr_x3_x4
COSINE="train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}"
$RK train configs/adafm/sr_staged_x3_x4.yaml --out $OUT --resume --progress off \
    --set model.args.features=32 --set model.args.blocks=8 --set model.args.global_skip=true --set data.train.patch=72 \
    --set train.optimizer.lr=5e-4 --set "$COSINE" --set threads=${THREADS:-2} \
    --set stages.0.steps=$STEPS1 --set stages.1.steps=$STEPS2 \
    --set data.val.every=500 --set train.checkpoint_every=500

.venv/bin/python scripts/publish_adafm.py adafm_sr_x3_x4
mkdir -p outputs/adafm
$RK adafm fit-lambda --model adafm_sr_x3_x4 --dataset McMaster --task sr --levels 3.25,3.5,3.75 --grid-step 0.05 \
    --write-card --json outputs/adafm/sr_fit_lambda_mcmaster.json
for SET in Set5 Set14; do
    $RK eval --model bicubic --model adafm_sr_x3_x4 --dataset $SET --task sr --levels 3,3.25,3.5,3.75,4 \
        --json outputs/adafm/sr_$(echo $SET | tr A-Z a-z)_scales.json
done
.venv/bin/python scripts/publish_adafm.py adafm_sr_x3_x4 --results outputs/adafm/sr_set5_scales.json
$RK adafm sweep --model adafm_sr_x3_x4 --dataset Set5 --task sr --level 3.5 --grid-step 0.1 \
    --json outputs/adafm/sr_sweep_set5.json
