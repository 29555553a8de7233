"""MBN's DuRB-M ablation (issue 17; paper Table 1): which of the improved attention's statistics (total variation,
global average) and the fused second operation make the block, each variant trained at equal steps from
configs/mbn/ablation_minimal_cpu.yaml (minimal branches, one shared input branch, the R -> B -> J -> H hierarchy).

    .venv/bin/python scripts/mbn_ablation.py components              # 5 runs x 600 steps (~15 min each here)
    .venv/bin/python scripts/mbn_ablation.py components --plot-only

Writes docs/img/mbn_components.png and runs/mbn/ablation/components.md (validation PSNR per factor and its mean
per variant, and whether the paper's claim holds: all three components best on every factor). The paper's rows
(PSNR, motion blur / haze / rain / JPEG): none 28.60 / 30.00 / 32.37 / 28.13; TV 28.92 / 32.35 / 32.65 / 28.14;
GAP 28.77 / 32.48 / 32.61 / 28.14; fusion 29.32 / 33.80 / 32.78 / 28.15; all (MBN) 29.35 / 34.06 / 32.83 / 28.19.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import REPO, Ablation

CONFIG = REPO / "configs" / "mbn" / "ablation_minimal_cpu.yaml"
RUNS = REPO / "runs" / "mbn" / "ablation"
ALL = "TV + GAP + fusion (MBN)"
STUDIES = {
    "components": {  # Table 1's rows; "fusion off" is DuRB-U's stride-2 conv (the paper does not say)
        "none": ["model.args.attention=none", "model.args.second_op=conv"],
        "TV": ["model.args.attention=tv", "model.args.second_op=conv"],
        "GAP": ["model.args.attention=gap", "model.args.second_op=conv"],
        "fusion": ["model.args.attention=none", "model.args.second_op=fusion"],
        ALL: ["model.args.attention=tv+gap", "model.args.second_op=fusion"],
    },
}


def components_verdict(last: dict[str, dict[str, float]]) -> str:
    """Table 1's claim: with all three components the block is best on every factor."""
    factors = sorted(last[ALL])
    best = [f for f in factors if all(last[ALL][f] >= row[f] for row in last.values())]
    return (f"With TV + GAP + fusion the block is best on {len(best)} of {len(factors)} factors "
            f"({', '.join(best) or 'none'}): the paper's claim (best on every factor) "
            f"{'holds' if len(best) == len(factors) else 'does NOT hold'} at this budget.")


MBN = Ablation("mbn", CONFIG, RUNS, STUDIES, verdicts={"components": components_verdict},
               loss_label="-1.1 SSIM + 0.75 L1 (running average)", val_label="PSNR (dB), CBSD68 crops, mean of factors",
               log_loss=False)

if __name__ == "__main__":
    sys.exit(MBN.main(description=__doc__.split("\n\n")[0]))
