"""Put a CPU-trained AdaFM model into the zoo with its model card (see adafm_denoise_cpu.sh, adafm_dejpeg_cpu.sh).

    python scripts/publish_adafm.py adafm_denoise_s15_s75                      # weights + card
    python scripts/publish_adafm.py adafm_denoise_s15_s75 --results GRID.json [--results MORE.json]  # measured results into the card
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from restorekit.card import Result, parse_card, read_card, this_machine, write_card
from restorekit.zoo import find, publish

DENOISE = {
    "family": "adafm",
    "task": "denoise",
    "levels": [15, 75],
    "level_name": "Gaussian noise sigma (0-255 scale), colour (RGB)",
    "description": "AdaFM-Net colour denoiser: basic model at sigma 15, 3x3 AdaFM layers adapted to sigma 75; "
                   "the strength slider interpolates between them (lambda 0 = sigma 15, 1 = sigma 75).",
    "training": {
        "recipe": "CPU recipe (reduced width 32 x 8 blocks; 2,000 + 12,000 steps of the basic model at sigma 15, "
                  "then 3,000 of 3x3 AdaFM layers at sigma 75), NOT the paper's 1e6 + 5e5 iterations; 3x3 AdaFM "
                  "filters instead of the paper's 1x1 (the filter-size study at the CPU budget: +0.10 dB at sigma "
                  "75 for the same step time); EMA 0.999",
        "command": "scripts/adafm_denoise_long_cpu.sh",
        # The first 2,000 basic steps are the first zoo model's (scripts/adafm_denoise_cpu.sh; in git history).
        "configs": ["configs/adafm/denoise_staged_s15_s75_cpu_long.yaml"],
        "data": "BSD200 (BSDS300 train split; DIV2K unavailable here), 48x48 RGB patches, flips/rot90, "
                "float Gaussian noise unclipped",
        "steps": {"basic_sigma15": 14000, "adafm_sigma75": 3000},
        "batch": 16,
        "loss": "L1",
        "optimizer": "Adam lr 5e-4, cosine to 1e-5 in each stage (the first 2,000 basic steps: multistep then "
                     "cosine)",
        "hardware": this_machine(threads=None),
    },
    "paper": {"CBSD68 sigma15 basic": 34.10, "CBSD68 sigma75 basic": 26.49, "CBSD68 sigma75 AdaFM 15->75": 26.35},
}


DEJPEG = {
    "family": "adafm",
    "task": "jpeg",
    "levels": [80, 10],  # [start (lambda 0), end (lambda 1)]
    "level_name": "JPEG quality (Pillow/libjpeg encoder) of the Y channel, compressed as a grey image",
    "grey": "y",
    "description": "AdaFM-Net JPEG deblocking on Y (MATLAB rgb2ycbcr Y): basic model at quality 80, 1x1 AdaFM layers "
                   "adapted to quality 10 (lambda 0 = q80, 1 = q10). Colour images are scored on their Y plane.",
    "training": {
        "recipe": "CPU recipe (reduced width 32 x 8 blocks; 2,000 + 400 steps), NOT the paper's 1e6 iterations; "
                  "global_skip=true (residual learning, not in the paper: without it this budget gave 32.40 dB "
                  "at q80 on LIVE1, below the 36.87 dB JPEG input)",
        "command": "scripts/adafm_dejpeg_cpu.sh",
        "configs": ["configs/adafm/dejpeg_basic_q80.yaml", "configs/adafm/dejpeg_adafm_q80_q10.yaml"],
        "data": "BSD200 (BSDS300 train split; DIV2K unavailable here) as MATLAB Y, 48x48 patches, flips/rot90, "
                "Pillow JPEG of the grey plane",
        "steps": {"basic_q80": 2000, "adafm_q10": 400},
        "batch": 16,
        "loss": "L1",
        "optimizer": "Adam lr 5e-4, cosine to 1e-5 in each stage",
        "hardware": this_machine(threads=None),
    },
    "paper": {"LIVE1 q80 basic": 38.81, "LIVE1 q10 basic": 29.55, "LIVE1 q10 AdaFM 80->10": 29.35},
}

SR_SLIDER = {
    "family": "adafm",
    "task": "sr",
    "levels": [3, 4],  # the level IS the scale: any scale between, the input bicubic-upscaled by it
    "level_name": "SR scale (the LR image bicubic-upscaled by it first, as SRCNN); fractional scales allowed",
    "description": "AdaFM-Net SR slider: basic model at x3, 5x5 AdaFM layers adapted to x4 (AdaFM paper Table 4); "
                   "`restorekit restore --task sr --level 3.5` upscales by 3.5 at lambda(3.5) from this card.",
    "training": {
        "recipe": "CPU recipe (reduced width 32 x 8 blocks; 4,000 + 1,000 steps), NOT the paper's 1e6 + 5e5 "
                  "iterations; global_skip=true (residual learning, not in the paper: without it 3,000 + 600 steps "
                  "gave Set5 31.02 / 29.30 dB at x3 / x4, bicubic +0.63 / +0.88)",
        "command": "scripts/adafm_sr_cpu.sh",
        "configs": ["configs/adafm/sr_staged_x3_x4.yaml"],
        "data": "T91 + BSD200 pooled (DIV2K unavailable here), 72x72 HR RGB patches, flips/rot90, MATLAB bicubic "
                "downscale rounded to 8 bits",
        "steps": {"basic_x3": 4000, "adafm_x4": 1000},
        "batch": 16,
        "loss": "L1",
        "optimizer": "Adam lr 5e-4, cosine to 1e-5 in each stage",
        "hardware": this_machine(threads=None),
    },
    "paper": {"Set5 x3 basic": 34.34, "Set5 x4 AdaFM 3->4": 32.00, "Set5 x4 basic": 32.13},
}

MODELS = {
    "adafm_sr_x3_x4": (SR_SLIDER, "runs/adafm_sr_x3_x4/final.safetensors", "Set5",
                       "restorekit eval --model bicubic --model adafm_sr_x3_x4 --dataset Set5 --task sr "
                       "--levels 3,3.25,3.5,3.75,4"),
    "adafm_denoise_s15_s75": (DENOISE, "runs/adafm_denoise_long/final.safetensors", "CBSD68",
                              "restorekit eval --model identity --model adafm_denoise_s15_s75 --dataset CBSD68 "
                              "--task denoise --levels 15,25,35,45,50,60,75"),
    "adafm_dejpeg_q80_q10": (DEJPEG, "runs/adafm_dejpeg_q80_q10/final.safetensors", "LIVE1",
                             "restorekit eval --model identity --model adafm_dejpeg_q80_q10 --dataset LIVE1 "
                             "--task jpeg --grey y --levels 80,60,40,30,20,10"),
}


BUNDLED = Path(__file__).resolve().parent.parent / "weights"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=sorted(MODELS))
    parser.add_argument("--source", help="trained weights (default: the recipe's runs/ output)")
    parser.add_argument("--results", action="append", default=[], metavar="GRID",
                        help="level-grid JSON from `restorekit eval --levels` (repeatable: the card gets every "
                             "grid's rows, in order; the first is the recipe's own dataset and command)")
    parser.add_argument("--card-only", action="store_true", help="rewrite the published card's recipe fields from "
                        "this script (the lambda curve and the results stay), e.g. after editing the record")
    args = parser.parse_args()
    card_updates, source, dataset, command = MODELS[args.name]
    if args.card_only:
        card_file = find(args.name).weights.with_suffix(".json")
        write_card(card_file, parse_card({**read_card(card_file).to_json(), **card_updates}, card_file))
        print(f"updated {card_file}")
        return
    if not args.results:
        # Into the bundled zoo (the repository's weights/), not the user's folder publish() defaults to.
        path = publish(Path(args.source or source), args.name, card_updates, folder=BUNDLED)
        print(f"published {path}")
        return
    card_file = find(args.name).weights.with_suffix(".json")
    card = read_card(card_file)
    recipe_grid, *more = [Result.from_grid(json.loads(Path(path).read_text()), args.name, key=args.name)
                          for path in args.results]
    # The recipe's grid is named by its own command; further grids keep each row's single-level eval command.
    results = [r.model_copy(update={"dataset": dataset, "command": command}) for r in recipe_grid]
    results += [r for grid in more for r in grid]
    write_card(card_file, card.model_copy(update={"results": results}))
    print(f"added {len(results)} results to {card_file}")


if __name__ == "__main__":
    main()
