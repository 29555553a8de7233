#!/usr/bin/env bash
# Per-level baselines for the zoo model `adafm_denoise_s15_s75` (issue 5 acceptance: AdaFM at lambda(sigma)
# versus a basic model trained at that sigma with the same budget), CPU recipe.
#
# Budget: the AdaFM model cost 2,000 steps of the basic model at sigma 15 + 400 steps of AdaFM layers at
# sigma 75. Each baseline gets the same 2,000 + 400: it starts from the same sigma-15 basic model (taken
# out of the zoo weights: AdaFM-Net at strength 0 IS the basic model) and then trains ALL its layers for
# 400 steps at its own sigma (same data, patch, batch, lr schedule as stage 2). The paper trains each
# baseline from scratch for the full 1e6 iterations; with a few hundred CPU steps, from scratch would
# only measure under-training, so the shared start is the fair equal-budget comparison here.
set -euo pipefail
cd "$(dirname "$0")/.."
RK=.venv/bin/restorekit
SIGMAS=${SIGMAS:-"25 35 45 50 60 75"}
STEPS=${STEPS:-400}
CPU="--set model.args.features=32 --set model.args.blocks=8 --set data.train.patch=48 --set train.optimizer.lr=5e-4 --set threads=2"
BASE=runs/adafm_denoise_basic_s15_from_zoo

# The sigma-15 basic model, out of the FIRST zoo model's weights (the AdaFM parameters dropped; fp16 -> fp32). The
# zoo name now holds the second model (scripts/adafm_denoise_long_cpu.sh, which starts from this basic model):
# the first is read from git history (FIRST_ZOO_COMMIT, the last commit before the replacement).
# BASE_ONLY=1: stop after the basic model; FIRST_GRID=1: only the first model's CBSD68 grid (sigma 15..75).
FIRST=$(mktemp -d)
trap 'rm -rf "$FIRST"' EXIT
for ext in safetensors json; do
    git show "${FIRST_ZOO_COMMIT:-99ce20c}:weights/adafm_denoise_s15_s75.$ext" > "$FIRST/adafm_denoise_s15_s75.$ext"
done
.venv/bin/python - "$BASE" "$FIRST/adafm_denoise_s15_s75.safetensors" <<'PY'
import sys
from pathlib import Path
from safetensors.torch import save_file
from restorekit.card import ModelCard, write_card
from restorekit.zoo import load_model
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
model = load_model(sys.argv[2])
state = {k: v.float().contiguous() for k, v in model.module.state_dict().items() if "adafm" not in k}
save_file(state, str(out / "final.safetensors"))
write_card(out / "final.json", ModelCard(name=out.name, architecture="adafm_net", task="denoise", levels=(15, 15),
                                         arguments={**model.card.arguments, "adafm": False}))
print(f"basic model: {len(state)} tensors -> {out}")
PY
[ "${BASE_ONLY:-0}" = 1 ] && exit 0   # only the basic model (scripts/adafm_kernel_study_cpu.sh)
if [ "${FIRST_GRID:-0}" = 1 ]; then   # only the first zoo model's CBSD68 grid, a column of scripts/adafm_report.py
    mkdir -p outputs/adafm/long
    $RK eval --model "$FIRST/adafm_denoise_s15_s75.safetensors" --dataset CBSD68 --task denoise \
        --levels 15,25,35,45,50,60,75 --json outputs/adafm/long/first_zoo_cbsd68_levels.json
    exit 0
fi

for SIGMA in $SIGMAS; do
    OUTDIR=runs/adafm_denoise_baseline_s$SIGMA
    [ -f "$OUTDIR/final.safetensors" ] && { echo "have $OUTDIR"; continue; }
    $RK train configs/adafm/denoise_basic_s15.yaml --out "$OUTDIR" $CPU \
        --set model.init=$BASE/final.safetensors --set train.steps=$STEPS \
        --set "data.train.levels=[noise:sigma=$SIGMA]" --set "data.val.levels=[noise:sigma=$SIGMA]" \
        --set 'train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}' \
        --set data.val.every=$STEPS --set train.checkpoint_every=$STEPS --progress off
done

# Every baseline at its own sigma on all 68 CBSD68 images (seed 0, same inputs as the AdaFM grid).
mkdir -p outputs/adafm
$RK eval --model $BASE/final.safetensors --dataset CBSD68 --task denoise --level 15 \
    --json outputs/adafm/baseline_s15.json
for SIGMA in $SIGMAS; do
    $RK eval --model runs/adafm_denoise_baseline_s$SIGMA/final.safetensors --dataset CBSD68 --task denoise \
        --level "$SIGMA" --json "outputs/adafm/baseline_s$SIGMA.json"
done
