"""Put the CPU-trained AdaFM denoiser into the zoo with its model card (see adafm_denoise_cpu.sh).

    python scripts/publish_adafm_denoise.py                      # weights + card
    python scripts/publish_adafm_denoise.py --results GRID.json  # add measured CBSD68 results to the card
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from restorekit.cli.common import write_json
from restorekit.zoo import publish, weights_dir

NAME = "adafm_denoise_s15_s75"
CARD = {
    "family": "adafm",
    "task": "denoise",
    "levels": [15, 75],
    "level_name": "Gaussian noise sigma (0-255 scale), colour (RGB)",
    "description": "AdaFM-Net colour denoiser: basic model at sigma 15, 1x1 AdaFM layers adapted to sigma 75; "
                   "the strength slider interpolates between them (lambda 0 = sigma 15, 1 = sigma 75).",
    "supports_half": True,
    "training": {
        "recipe": "CPU recipe (reduced width 32 x 8 blocks; ~2,000 + 400 steps), NOT the paper's 1e6 iterations",
        "command": "scripts/adafm_denoise_cpu.sh",
        "configs": ["configs/adafm/denoise_basic_s15.yaml", "configs/adafm/denoise_adafm_s15_s75.yaml"],
        "data": "BSD200 (BSDS300 train split; DIV2K unavailable here), 48x48 RGB patches, flips/rot90, "
                "float Gaussian noise unclipped",
        "steps": {"basic_sigma15": 2000, "adafm_sigma75": 400},
        "batch": 16,
        "loss": "L1",
        "optimizer": "Adam lr 5e-4 (stage 1: multistep then cosine; stage 2: cosine)",
        "hardware": f"2-core CPU ({platform.machine()}), shared with other jobs; torch {torch.__version__}",
    },
    "paper": {"CBSD68 sigma15 basic": 34.10, "CBSD68 sigma75 basic": 26.49, "CBSD68 sigma75 AdaFM 15->75": 26.35},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", help="level-grid JSON from `restorekit eval --levels`")
    args = parser.parse_args()
    if not args.results:
        path = publish(Path("runs/adafm_denoise_s15_s75/final.safetensors"), NAME, CARD)
        print(f"published {path}")
        return
    grid = json.loads(Path(args.results).read_text())
    card_file = weights_dir() / f"{NAME}.json"
    card = json.loads(card_file.read_text())
    rows = grid["results"][NAME]
    card["results"] = [
        {"dataset": "CBSD68", "task": "denoise", "level": r["level"], "strength": r.get("strength"),
         "psnr": round(r["psnr"], 3), "ssim": round(r["ssim"], 4), "n_images": r["n_images"],
         "protocol": {**grid["protocol"], "degradation": r["spec"]},
         "command": "restorekit eval --model identity --model adafm_denoise_s15_s75 --dataset CBSD68 "
                    "--task denoise --levels 15,25,35,45,50,60,75"}
        for r in rows
    ]
    write_json(card_file, card)
    print(f"added {len(rows)} results to {card_file}")


if __name__ == "__main__":
    main()
