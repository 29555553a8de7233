"""Put a CPU-trained RED-Net into the bundled zoo with its card (issue 16): trained from scratch here (no RED-Net
weights were released in a form that could be had), so the card's provenance is this repository.

    restorekit train configs/rednet/denoise_blind_red30.yaml --out runs/rednet/denoise_blind_red30   # ~75 min here
    restorekit train configs/rednet/denoise_blind_red30_phase2.yaml --out runs/rednet/denoise_blind_red30_phase2
    restorekit eval --model runs/rednet/denoise_blind_red30_phase2/final.safetensors --dataset Set12 \\
        --task denoise --levels 10,30,50,70 --json outputs/rednet/red30_blind_Set12.json  # BSD68: --levels 50
    python scripts/publish_rednet.py outputs/rednet/red30_blind_Set12.json outputs/rednet/red30_blind_BSD68.json

Results are the level grids' rows (KAIR's protocol: float Gaussian noise seeded per image, not clipped; output
rounded; grey PSNR/SSIM, no border crop); each card result says how to rerun it with `restorekit eval`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from restorekit.card import Result, this_machine
from restorekit.zoo import publish

ROOT = Path(__file__).resolve().parent.parent
HARDWARE = this_machine("two other training jobs")
REDNET_DENOISE_BLIND = {
    "family": "rednet",
    "task": "denoise",
    "levels": (10.0, 70.0),
    "level_name": "Gaussian noise sigma (0-255 scale)",
    "blind": True,
    "grey": "luma",
    "license": "MIT",
    "description": "RED30 (15 valid 3x3 convs + 15 mirrored deconvs, 64 features, symmetric skips every 2 layers, "
                   "global residual): ONE blind grey denoiser for Gaussian noise sigma 10-70 (RED-Net Table 3's "
                   "blind model), trained from scratch on this CPU. A short CPU budget: far below the paper "
                   "(docs/BENCHMARKS.md).",
    "training": {
        "recipe": "supervised MSE from scratch, batch 16, 50x50 patches: phase 1 1,200 steps at Adam 1e-4 (the "
                  "paper's lr) x0.5 at 60% / 85%; phase 2 600 steps at 4e-4, /4 at 400 (CPU recipe)",
        "command": "restorekit train configs/rednet/denoise_blind_red30.yaml --out runs/rednet/denoise_blind_red30 && "
                   "restorekit train configs/rednet/denoise_blind_red30_phase2.yaml "
                   "--out runs/rednet/denoise_blind_red30_phase2",
        "config": "configs/rednet/denoise_blind_red30_phase2.yaml (init: phase 1, configs/rednet/denoise_blind_red30.yaml)",
        "data": "Train400 (DnCNN's 400 grey 180x180 BSD crops; the paper's 300 BSD images), 50x50 patches, "
                "flips/rot90, sigma drawn from {10, 30, 50, 70} per patch (float noise, not clipped)",
        "steps": 1800,
        "hardware": HARDWARE,
    },
}
MODELS = {"rednet_denoise_blind": (ROOT / "runs" / "rednet" / "denoise_blind_red30_phase2", REDNET_DENOISE_BLIND)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", nargs="*", type=Path, help="restorekit eval --levels --json files of the model")
    parser.add_argument("--model", choices=sorted(MODELS), default="rednet_denoise_blind", help="which zoo model")
    args = parser.parse_args()
    run, card = MODELS[args.model]
    results = [result.model_dump() for path in args.grids
               for result in Result.from_grid(json.loads(path.read_text()), args.model)]
    print(f"published {publish(run / 'final.safetensors', args.model, {**card, 'results': results}, folder=ROOT / 'weights')}")


if __name__ == "__main__":
    main()
