#!/usr/bin/env bash
# AdaFM paper Table 3 on equal terms with the zoo model `adafm_denoise_s15_s75`, CPU recipe: AdaBN and
# conditional IN (spec 4.7) on the same reduced body (32 features, 8 blocks), data and step budget as the
# AdaFM model (2,000 steps at sigma 15; CIN then 400 steps of its level-1 affine pairs at sigma 75).
# AdaBN needs no second stage: at sigma 75 its BN statistics are recomputed on sigma-75 training patches.
# Every model is measured on all 68 CBSD68 images at sigma 15 and 75 (float noise, seed 0, RGB, no crop).
set -euo pipefail
cd "$(dirname "$0")/.."
RK=.venv/bin/restorekit
CPU="--set model.args.features=32 --set model.args.blocks=8 --set data.train.patch=48 --set train.optimizer.lr=5e-4 --set threads=${THREADS:-2}"
COSINE="train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}"
STAGE1=${STAGE1:-2000}
STAGE2=${STAGE2:-400}

train() {  # config out extra-args...
    local config=$1 out=$2; shift 2
    [ -f "$out/final.safetensors" ] && { echo "have $out"; return; }
    $RK train "$config" --out "$out" $CPU --set "$COSINE" --progress off "$@"
}

train configs/adafm/denoise_adabn_s15.yaml runs/adafm_denoise_adabn_s15 --set train.steps=$STAGE1 \
    --set data.val.every=$STAGE1 --set train.checkpoint_every=1000
train configs/adafm/denoise_cin_s15.yaml runs/adafm_denoise_cin_s15 --set train.steps=$STAGE1 \
    --set data.val.every=$STAGE1 --set train.checkpoint_every=1000
train configs/adafm/denoise_cin_s15_s75.yaml runs/adafm_denoise_cin_s15_s75 --set train.steps=$STAGE2 \
    --set model.init=runs/adafm_denoise_cin_s15/final.safetensors --set data.val.every=$STAGE2 \
    --set train.checkpoint_every=$STAGE2

# AdaBN at sigma 75: BN running statistics over 64 batches of 16 random 48x48 BSD200 crops with sigma-75
# float noise (the training patch size, so statistics match what the layers saw in training).
.venv/bin/python - <<'PY'
from pathlib import Path
import numpy as np
import torch
from safetensors.torch import save_file
from restorekit.io import list_images, read_image
from restorekit.models.adafm import recompute_bn_statistics
from restorekit.paths import data_root
from restorekit.card import read_card, write_card
from restorekit.zoo import load_model

source, target = Path("runs/adafm_denoise_adabn_s15"), Path("runs/adafm_denoise_adabn_s75")
model = load_model(str(source / "final.safetensors"))
images = [read_image(p)[0] for p in list_images(data_root() / "train" / "BSD200")]
rng, noise = np.random.default_rng(0), torch.Generator().manual_seed(0)

def batches(count=64, size=16, patch=48):
    for _ in range(count):
        crops = []
        for _ in range(size):
            im = images[rng.integers(len(images))]
            y, x = rng.integers(im.shape[1] - patch + 1), rng.integers(im.shape[2] - patch + 1)
            crops.append(im[:3, y:y + patch, x:x + patch])
        clean = torch.stack(crops)
        yield clean + torch.randn(clean.shape, generator=noise) * 75 / 255

recompute_bn_statistics(model.module, batches())
target.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, str(target / "final.safetensors"))
card = read_card(source / "final.json")
note = "AdaBN: BN statistics recomputed on sigma-75 data (64 x 16 BSD200 48x48 crops, seed 0)"
write_card(target / "final.json", card.model_copy(update={"name": target.name, "description": note}))
print(f"AdaBN sigma-75 statistics -> {target}")
PY

mkdir -p outputs/adafm
ev() {  # model level json [args]
    local model=$1 level=$2 json=$3; shift 3
    $RK eval --model "$model" --dataset CBSD68 --task denoise --level "$level" --json "$json" "$@"
}
ev runs/adafm_denoise_adabn_s15/final.safetensors 15 outputs/adafm/table3_adabn_s15.json
ev runs/adafm_denoise_adabn_s75/final.safetensors 75 outputs/adafm/table3_adabn_s75.json
ev runs/adafm_denoise_cin_s15_s75/final.safetensors 15 outputs/adafm/table3_cin_s15.json --strength 0
ev runs/adafm_denoise_cin_s15_s75/final.safetensors 75 outputs/adafm/table3_cin_s75.json --strength 1
