#!/usr/bin/env bash
# CPU bf16 training (train.amp: bf16 + train.channels_last: true) against fp32, side by side in one
# process, on the AdaFM CPU recipe's body (AdaFM-Net basic model, 32 features x 8 blocks, batch 16, 48x48
# BSD200 patches, sigma 15, lr 5e-4 cosine; validation on 4 CBSD68 128x128 crops in fp32).
#   1. step time: the same batch through an fp32 and a bf16 copy of the model, alternating, median of ROUNDS;
#   2. quality: STEPS training steps with each precision (same seed, same batches), validation PSNR at the end,
#      of STAGE basic (the basic model from scratch at sigma 15, configs/adafm/denoise_basic_s15.yaml) or
#      STAGE adafm (only the AdaFM layers at sigma 75, from the zoo model's sigma-15 basic weights,
#      configs/adafm/denoise_adafm_s15_s75.yaml).
# Writes outputs/adafm/bf16_cpu_STAGE.json; docs/training.md quotes the numbers. The rule for the CPU
# recipes: bf16 only where it costs less than 0.05 dB.
#   STAGE=basic STEPS=300 scripts/adafm_bf16_cpu.sh; STAGE=adafm STEPS=200 scripts/adafm_bf16_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${STAGE:-basic} STEPS=${STEPS:-300} ROUNDS=${ROUNDS:-20} THREADS=${THREADS:-2}
.venv/bin/python - "$STEPS" "$ROUNDS" "$THREADS" "$STAGE" <<'PY'
import copy, json, statistics, sys, time
from pathlib import Path
import torch
from safetensors.torch import save_file
from restorekit.models import create_model
from restorekit.train import load_config, run
from restorekit.zoo import find, read_weights

steps, rounds, threads = (int(a) for a in sys.argv[1:4])
stage = sys.argv[4]
folder = Path("outputs/adafm/bf16_cpu") / stage
folder.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(threads)
torch.manual_seed(0)
fp32 = create_model("adafm_net", channels=3, features=32, blocks=8, adafm=False)
bf16 = copy.deepcopy(fp32).to(memory_format=torch.channels_last)
x, y = torch.rand(16, 3, 48, 48), torch.rand(16, 3, 48, 48)
opts = {m: torch.optim.Adam(m.parameters(), 5e-4) for m in (fp32, bf16)}

def step(model, half):
    inp = x.contiguous(memory_format=torch.channels_last) if half else x
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
        out = model(inp)
    loss = (out.float() - y).abs().mean()
    opts[model].zero_grad()
    loss.backward()
    opts[model].step()
    return time.perf_counter() - start

for _ in range(3):  # warm-up (oneDNN primitive caches)
    step(fp32, False), step(bf16, True)
times = {"fp32": [], "bf16": []}
for _ in range(rounds):
    times["fp32"].append(step(fp32, False))
    times["bf16"].append(step(bf16, True))
median = {k: statistics.median(v) for k, v in times.items()}

common = ["model.args.features=32", "model.args.blocks=8", "data.train.patch=48", "train.optimizer.lr=5e-4",
          f"threads={threads}", "device=cpu", "data.train.workers=0", f"train.steps={steps}",
          f"data.val.every={steps}", "train.checkpoint_every=0", "logging.tensorboard=false",
          "train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}"]
config = "configs/adafm/denoise_basic_s15.yaml"
if stage == "adafm":  # the zoo model without its AdaFM layers is the recipe's sigma-15 basic model
    basic = folder / "basic_s15_from_zoo.safetensors"
    state = read_weights(find("adafm_denoise_s15_s75").weights)
    save_file({k: v.float().contiguous() for k, v in state.items() if "adafm" not in k}, str(basic))
    config, common = "configs/adafm/denoise_adafm_s15_s75.yaml", common + [f"model.init={basic}"]
runs = {}
for name, extra in (("fp32", []), ("bf16", ["train.amp=bf16", "train.channels_last=true"])):
    cfg = load_config(config, common + extra)
    out = folder / name
    start = time.perf_counter()
    summary = run(cfg, out, progress="off")
    runs[name] = {"val_psnr": summary["val_psnr"], "seconds": round(time.perf_counter() - start, 1)}
psnr = {k: next(iter(v["val_psnr"].values())) for k, v in runs.items()}
result = {
    "step_seconds_median": median, "step_time_ratio_bf16_over_fp32": median["bf16"] / median["fp32"],
    "training": runs, "psnr_cost_db": psnr["fp32"] - psnr["bf16"], "stage": stage, "config": config,
    "steps": steps, "rounds": rounds, "threads": threads, "torch": torch.__version__,
}
Path(f"outputs/adafm/bf16_cpu_{stage}.json").write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps(result, indent=2))
PY
