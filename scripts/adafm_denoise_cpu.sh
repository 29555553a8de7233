#!/usr/bin/env bash
# The CPU recipe behind the FIRST zoo model `adafm_denoise_s15_s75` (AdaFM colour denoising, sigma 15 -> 75),
# replaced on 2026-12-05 by the longer recipe of scripts/adafm_denoise_long_cpu.sh, which continues from this
# one's basic model (its weights: `git show 99ce20c:weights/adafm_denoise_s15_s75.safetensors`),
# exactly as it was run on the 2-core development machine (shared with other jobs, ~1 h in all).
# Reduced width (32 features, 8 blocks instead of 64 x 16) and a few thousand steps instead of 1e6:
# a small honest model, far from the paper's numbers. The faithful recipe is the config without the
# CPU overrides (configs/adafm/*.yaml), for a GPU.
# STAGED=1 runs the same two stages as ONE staged run (configs/adafm/denoise_staged_s15_s75.yaml, the clean
# 2,000 + 400-step cosine schedule; in fp32 bit-identical to the two configs run one after the other, see
# tests/test_recipes.py) and stops there, in CPU bf16 (autocast + channels_last, about 2x faster per step;
# measured cost -0.021 dB for the basic stage and +0.000 dB for the AdaFM stage, below the 0.05 dB bar:
# docs/training.md, "CPU bf16"). AMP=none reproduces the fp32 two-run recipe exactly. Without STAGED=1,
# the commands below are the record of how the zoo model was made (fp32).
set -euo pipefail
cd "$(dirname "$0")/.."
RK=.venv/bin/restorekit
CPU="--set model.args.features=32 --set model.args.blocks=8 --set data.train.patch=48 --set train.optimizer.lr=5e-4 --set threads=2"

if [ "${STAGED:-0}" = 1 ]; then
    $RK train configs/adafm/denoise_staged_s15_s75.yaml --out runs/adafm_denoise_staged_s15_s75 $CPU \
        --set stages.0.steps=2000 --set stages.1.steps=400 \
        --set 'train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}' \
        --set data.val.every=500 --set train.checkpoint_every=500 \
        --set train.amp=${AMP:-bf16} --set train.channels_last=$([ "${AMP:-bf16}" = bf16 ] && echo true || echo false)
    exit 0
fi

# Stage 1: basic model at sigma 15 (1000 steps, then 1000 more of a 1500-step cosine run, stopped at its
# step-1000 checkpoint for lack of time).
$RK train configs/adafm/denoise_basic_s15.yaml --out runs/adafm_denoise_basic_s15 $CPU \
    --set train.steps=1000 --set 'train.scheduler.milestones=[800]'
$RK train configs/adafm/denoise_basic_s15.yaml --out runs/adafm_denoise_basic_s15_b $CPU \
    --set model.init=runs/adafm_denoise_basic_s15/final.safetensors --set train.steps=1500 \
    --set 'train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}' \
    --set data.val.every=500 --set train.checkpoint_every=500 || true   # interrupted after step 1000
.venv/bin/python - <<'PY'
import torch
from safetensors.torch import save_file
from restorekit.card import ModelCard, write_card
ck = torch.load("runs/adafm_denoise_basic_s15_b/checkpoints/step_00001000.pt", map_location="cpu", weights_only=True)
save_file({k: v.contiguous() for k, v in ck["model"].items()}, "runs/adafm_denoise_basic_s15_b/final.safetensors")
write_card("runs/adafm_denoise_basic_s15_b/final.json",
           ModelCard(name="adafm_denoise_basic_s15_b", architecture="adafm_net", task="denoise",
                     arguments=ck["config"]["model"]["args"]))
PY

# Stage 2: AdaFM layers only, at sigma 75, base frozen.
$RK train configs/adafm/denoise_adafm_s15_s75.yaml --out runs/adafm_denoise_s15_s75 $CPU \
    --set model.init=runs/adafm_denoise_basic_s15_b/final.safetensors --set train.steps=400 \
    --set 'train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}' \
    --set data.val.every=200

# Into the zoo (fp16 + card), then lambda(sigma) on McMaster (18 colour images, disjoint from CBSD68 and
# BSD100; 17 min here), then the full CBSD68 evaluation.
.venv/bin/python scripts/publish_adafm.py adafm_denoise_s15_s75
$RK adafm fit-lambda --model adafm_denoise_s15_s75 --dataset McMaster --task denoise \
    --levels 25,35,45,50,60 --grid-step 0.05 --write-card --json outputs/adafm/fit_lambda_mcmaster.json
$RK eval --model identity --model adafm_denoise_s15_s75 --dataset CBSD68 --task denoise \
    --levels 15,25,35,45,50,60,75 --json outputs/adafm/cbsd68_levels.json --plot docs/img/adafm_denoise_cbsd68.png
$RK adafm sweep --model adafm_denoise_s15_s75 --dataset CBSD68 --task denoise --level 25,45,60 --grid-step 0.1 \
    --limit 8 --json outputs/adafm/denoise_sweeps.json --plot docs/img/adafm_denoise_lambda.png
.venv/bin/python scripts/publish_adafm.py adafm_denoise_s15_s75 --results outputs/adafm/cbsd68_levels.json
