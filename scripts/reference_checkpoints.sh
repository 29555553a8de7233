#!/usr/bin/env bash
# Issue 12: released checkpoints (VDSR, IDN, CDnCNN-B, DnCNN-3, FFDNet) through `restorekit eval`.
# Writes outputs/reference/*.json (git-ignored); docs/BENCHMARKS.md "Released checkpoints (issue 12)"
# is made from them. The weights are read in place from the reference-weights folder, never copied.
#
#   scripts/reference_checkpoints.sh [GROUP...]   groups: sr jpeg sr-sets colour mcmaster grey clipped (default: all, in order)
#   LIMIT=N: only the first N images of every set (a quick partial run; the JSON records n_images)
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${RESTOREKIT_REFERENCE_WEIGHTS:-../shared/reference-weights}
OUT=outputs/reference
RK=${RK:-.venv/bin/python -m restorekit}
mkdir -p "$OUT"
limit=()
[[ -n "${LIMIT:-}" ]] && limit=(--limit "$LIMIT")

ev() {  # ev NAME ARGS...: one eval, skipped when its JSON exists
  local json="$OUT/$1.json"; shift
  [[ -f "$json" ]] && return 0
  nice $RK eval "$@" "${limit[@]}" --json "$json" >/dev/null
  echo "wrote $json"
}

sr() {
  # Y-only SR models: the default SR input is y-float (unrounded HR Y, bicubic down as float, no rounding);
  # output rounded (default --quantize round). VDSR's own script does not round its output: the *_float rows.
  for s in 2 3 4; do
    ev "vdsr_Set5_x$s" --model "$REF/vdsr_official.mat" --dataset Set5 --task sr --scale "$s"
    ev "vdsr_Set5_x${s}_float" --model "$REF/vdsr_official.mat" --dataset Set5 --task sr --scale "$s" --quantize none
    ev "idn_Set5_x$s" --model "$REF/idn_x$s.safetensors" --dataset Set5 --task sr --scale "$s"
    ev "dncnn3_Set5_x$s" --model "$REF/dncnn3_multitask.mat" --dataset Set5 --task sr --scale "$s"
  done
}

jpeg() {  # DnCNN-3 on the MATLAB Y of LIVE1 (rounded, as an 8-bit plane), compressed at each quality
  for q in 10 20 30 40; do
    ev "dncnn3_LIVE1_q$q" --model "$REF/dncnn3_multitask.mat" --dataset LIVE1 --task jpeg --level "$q"
  done
}

sr_sets() {  # BSD100: the benchmark's 480x320 top-left crop, as the bicubic table
  for s in 2 3 4; do
    ev "idn_Set14_x$s" --model "$REF/idn_x$s.safetensors" --dataset Set14 --task sr --scale "$s"
    ev "vdsr_Set14_x$s" --model "$REF/vdsr_official.mat" --dataset Set14 --task sr --scale "$s"
    ev "idn_BSD100_x$s" --model "$REF/idn_x$s.safetensors" --dataset BSD100 --task sr --scale "$s" --crop-to 480x320
    ev "vdsr_BSD100_x$s" --model "$REF/vdsr_official.mat" --dataset BSD100 --task sr --scale "$s" --crop-to 480x320
  done
}

# Denoising, KAIR protocol: np.random.seed(0) per image, float Gaussian noise, not clipped or quantised.
colour() {
  for sigma in 15 25 35 50; do
    ev "cdncnn_b_CBSD68_s$sigma" --model "$REF/cdncnn_b_color_blind.mat" --dataset CBSD68 --task denoise --level "$sigma"
  done
  for sigma in 15 25 35 50 75 45 60; do  # FFDNet's noise map is set from --level; 45/60 for the AdaFM table
    ev "ffdnet_color_CBSD68_s$sigma" --model "$REF/ffdnet_color.mat" --dataset CBSD68 --task denoise --level "$sigma"
  done
}

mcmaster() {  # the same colour models on McMaster (18 images), beside the AdaFM zoo denoiser (issue 19 item 4)
  for sigma in 15 25 35 50 75; do
    ev "cdncnn_b_McMaster_s$sigma" --model "$REF/cdncnn_b_color_blind.mat" --dataset McMaster --task denoise --level "$sigma"
    ev "ffdnet_color_McMaster_s$sigma" --model "$REF/ffdnet_color.mat" --dataset McMaster --task denoise --level "$sigma"
  done
}

grey() {
  for sigma in 15 25 50; do
    ev "ffdnet_gray_BSD68_s$sigma" --model "$REF/ffdnet_gray.mat" --dataset BSD68 --task denoise --level "$sigma"
    ev "dncnn3_BSD68_s$sigma" --model "$REF/dncnn3_multitask.mat" --dataset BSD68 --task denoise --level "$sigma"
  done
}

clipped() {  # the MATLAB pipeline (FFDNet/AdaFM test scripts save the noisy image): clipped to [0, 1], rounded
  for sigma in 50 75; do
    ev "ffdnet_color_CBSD68_s${sigma}_uint8" --model "$REF/ffdnet_color.mat" --dataset CBSD68 --task denoise \
      --level "$sigma" --degrade "noise:sigma=$sigma,quantize=true" --seed-mode fixed
  done
}

groups=("$@")
[[ ${#groups[@]} -eq 0 ]] && groups=(sr jpeg sr-sets colour mcmaster grey clipped)
for group in "${groups[@]}"; do
  case "$group" in
    sr) sr ;;
    jpeg) jpeg ;;
    sr-sets) sr_sets ;;
    colour) colour ;;
    mcmaster) mcmaster ;;
    grey) grey ;;
    clipped) clipped ;;
    *) echo "unknown group $group; groups: sr jpeg sr-sets colour mcmaster grey clipped" >&2; exit 2 ;;
  esac
done
