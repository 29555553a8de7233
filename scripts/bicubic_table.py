"""Reproduce the field's standard bicubic SR table with `restorekit eval` and print it as markdown.

    .venv/bin/python scripts/bicubic_table.py        # writes outputs/bicubic/*.json, prints the table

Protocol: modcrop(HR, S); MATLAB bicubic downscale by S, rounded to uint8; MATLAB bicubic upscale;
output rounded; PSNR/SSIM on Y (studio swing, Y rounded as MATLAB's rgb2ycbcr on uint8) with a border
crop of S; BSD100 uses the top-left 480x320 crop. Mean over images.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from restorekit.cli import main
from restorekit.paths import data_root

PAPER = {  # PSNR / SSIM as published across the SR literature (e.g. VDSR, CARN tables)
    "Set5": {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)},
    "Set14": {2: (30.24, 0.8688), 3: (27.55, 0.7742), 4: (26.00, 0.7027)},
    "BSD100": {2: (29.56, 0.8431), 3: (27.21, 0.7385), 4: (25.96, 0.6675)},
}


def run() -> int:
    root = data_root()
    if root is None:
        print("benchmark data not found: set RESTOREKIT_DATA", file=sys.stderr)
        return 1
    out_dir = Path("outputs/bicubic")
    lines = ["| dataset | scale | PSNR ours | PSNR published | gap | SSIM ours | SSIM published |",
             "|---|---|---|---|---|---|---|"]
    for dataset, scales in PAPER.items():
        for scale, (paper_psnr, paper_ssim) in scales.items():
            out = out_dir / f"{dataset}_x{scale}.json"
            args = ["eval", "--model", "bicubic", "--dataset", str(root / "test" / dataset), "--task", "sr",
                    "--scale", str(scale), "--json", str(out)]
            if dataset == "BSD100":
                args += ["--crop-to", "480x320"]
            if main(args) != 0:
                return 1
            r = json.loads(out.read_text())
            lines.append(f"| {dataset} | x{scale} | {r['psnr']:.3f} | {paper_psnr:.2f} | {r['psnr'] - paper_psnr:+.3f}"
                         f" | {r['ssim']:.4f} | {paper_ssim:.4f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(run())
