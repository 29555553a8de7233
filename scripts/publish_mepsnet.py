"""Put the CPU-trained MEPSNet into the bundled zoo with its card (issue 18): a blind restorer for images damaged
differently in different places (SHDD: Gaussian noise, Gaussian blur, pink noise, contrast), trained on
SHDD-moderate only. Trained here from scratch (no MEPSNet weights were released with a license we could use).

    restorekit train configs/mepsnet/mepsnet_shdd_moderate_cpu.yaml --out runs/mepsnet/moderate_cpu_steps6000 \
        --set train.steps=6000 --resume
    .venv/bin/python scripts/shdd_table.py --rows "Input,MEPSNet (6000 steps)" --out runs/mepsnet/tables_s16
    .venv/bin/python scripts/publish_mepsnet.py

The card's results are the "MEPSNet (6000 steps)" cells of scripts/shdd_table.py (its cache under
runs/mepsnet/tables_s16), each with the `restorekit eval` command that reproduces it. (The zoo model up to git
7c0a4f4 was the 3,000-step run, `--out runs/mepsnet/moderate_cpu` without the --set.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import shdd_table  # noqa: E402

from restorekit.card import Result, this_machine  # noqa: E402
from restorekit.zoo import publish  # noqa: E402

NAME = "mepsnet_shdd"
LEVELS = ("easy", "moderate", "difficult")
ROW = "MEPSNet (6000 steps)"  # twice the first zoo model's 3,000 steps (the schedule's milestones unchanged)
RUN = shdd_table.ROWS[ROW][0]
TABLES = ROOT / "runs" / "mepsnet" / "tables_s16"  # scripts/shdd_table.py's --out for that row
CARD = {
    "family": "mepsnet", "task": "restore", "blind": True, "license": "MIT",
    "description": "MEPSNet (thesis ch. 7): mixture of 3 experts sharing one bank of 16 convolution templates, "
                   "attention fusion; narrowed for this CPU (2 SRIR x 4 blocks per expert, 32 channels, extraction "
                   "to 64: 339,859 parameters; the thesis's 2.24M). Restores spatially varying Gaussian noise, "
                   "Gaussian blur, pink noise and contrast change without being told which is where. Trained on "
                   "SHDD-moderate only, 6,000 CPU steps; 6 dB under the thesis's full model (docs/BENCHMARKS.md).",
    "training": {
        "recipe": "supervised MSE, Adam (0.9, 0.99) wd 1e-4, lr 1e-4 halved at 300 and 750, residual_scale 0.1",
        "command": "restorekit train configs/mepsnet/mepsnet_shdd_moderate_cpu.yaml --out "
                   f"runs/mepsnet/{RUN} --set train.steps=6000",
        "config": "configs/mepsnet/mepsnet_shdd_moderate_cpu.yaml",
        "data": "BSD200 (BSDS300 train; DIV2K is not here), 48x48 patches, SHDD-moderate (3 regions) drawn on the "
                "fly at the thesis's ranges, flips/rotations",
        "steps": 6000,
        "hardware": this_machine("two or three other training jobs"),
    },
}


def results() -> list[dict]:
    out = []
    for level in LEVELS:
        path = shdd_table.cache_file(TABLES, ROW, level)
        if path.is_file():
            data = json.loads(path.read_text())
            flags = f"--degrade 'shdd:level={level}' --seed-mode name --limit 50"
            out.append(Result.from_eval(data, NAME, flags).model_dump())
    return out


def main() -> None:
    run = ROOT / "runs" / "mepsnet" / RUN
    path = publish(run / "final.safetensors", NAME, {**CARD, "results": results()}, ROOT / "weights")
    print(f"published {path}")


if __name__ == "__main__":
    main()
