"""Put the CPU fine-tuned CARN-M x8 (configs/carn/carn_m_x8_from_x4.yaml) into the bundled zoo with its card.

    restorekit train configs/carn/carn_m_x8_from_x4.yaml --out runs/carn_m_x8_from_x4 \
        --set model.init=PATH/carn_m.pth                                  # ~50 min on 2 CPU cores
    restorekit eval --model runs/carn_m_x8_from_x4/final.safetensors --dataset Set5 --task sr --scale 8 \
        --json outputs/carn_m_x8_Set5.json                                # and Set14, BSD100 (--crop-to 480x320)
    python scripts/publish_carn.py outputs/carn_m_x8_Set5.json outputs/carn_m_x8_Set14.json ...

The weights start from CARN-pytorch's released carn_m.pth (MIT), which the license lets us redistribute
in modified form; the card says so, with the source file's sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from pathlib import Path

import torch

from restorekit.card import Provenance, Result
from restorekit.zoo import publish

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "runs" / "carn_m_x8_from_x4"
SOURCE = "nmhkahn/CARN-pytorch : checkpoint/carn_m.pth"
# Thesis Table 3.x (CARN x8 baseline, chapter 3) is not reproduced by this budget; bicubic x8 is measured beside.
CARD = {
    "family": "carn",
    "task": "sr",
    "scales": [8],
    "license": "MIT",
    "description": "CARN-M (ECCV layout, groups 4, shared efficient residual unit) at x8: body, entry and exit "
                   "from the released multi-scale CARN-M, a fresh x8 head (three x2 conv + shuffle steps), "
                   "fine-tuned on this CPU. A small honest model, well below the thesis's x8 results.",
    "training": {
        "recipe": "supervised L1 fine-tune (CPU recipe; the thesis trains progressive CARN on DIV2K for 6.5e5 steps)",
        "command": "restorekit train configs/carn/carn_m_x8_from_x4.yaml --out runs/carn_m_x8_from_x4",
        "config": "configs/carn/carn_m_x8_from_x4.yaml",
        "data": "BSD200 (BSDS300 train split; DIV2K unavailable here), 24x24 LR / 192x192 HR RGB patches, "
                "flips/rot90, MATLAB bicubic x8 downscale rounded to uint8",
        "steps": 2000,
        "hardware": f"2-core CPU ({platform.machine()}), shared with other jobs; torch {torch.__version__}",
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def result_of(path: Path) -> Result:
    """One `restorekit eval --json` file -> a card Result (dataset and scale from the file's own record)."""
    data = json.loads(path.read_text())
    dataset = Path(data["dataset"]).name
    crop = (data.get("protocol") or {}).get("crop_to")
    command = f"restorekit eval --model carn_m_x8 --dataset {dataset} --task sr --scale 8" + \
        (f" --crop-to {crop}" if crop else "")
    return Result(dataset=dataset, task="sr", scale=8, psnr=round(data["psnr"], 3), ssim=round(data["ssim"], 4),
                  n_images=data["n_images"], protocol=data.get("protocol") or {}, command=command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", type=Path, help="restorekit eval --json files of the trained model")
    parser.add_argument("--source-file", type=Path, default=ROOT.parent / "shared" / "reference-weights" / "carn_m.pth")
    args = parser.parse_args()
    provenance = Provenance(source=SOURCE, license="MIT", original_file="carn_m.pth",
                            original_sha256=sha256(args.source_file) if args.source_file.is_file() else None,
                            imported_with="fine-tuned from it: configs/carn/carn_m_x8_from_x4.yaml (model.init)")
    updates = {**CARD, "provenance": provenance.model_dump(), "results": [r.model_dump() for r in map(result_of,
                                                                                                      args.results)]}
    target = publish(RUN / "final.safetensors", "carn_m_x8", updates, folder=ROOT / "weights")
    print(f"published {target}")


if __name__ == "__main__":
    main()
