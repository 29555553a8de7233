"""RED-Net's training analyses (issue 16; paper Sec. 4.3-4.4, Figs. 6-7): variants of one base config trained at
equal steps, their training loss and validation PSNR plotted against the step, and a table of where each ends.

    .venv/bin/python scripts/rednet_ablation.py skips            # Fig. 6: 10/20/30 layers, with and without skips
    .venv/bin/python scripts/rednet_ablation.py shortcut_type    # Fig. 7: RED's symmetric skips vs He et al.'s
    .venv/bin/python scripts/rednet_ablation.py width kernel     # the filter number and size sweeps
    .venv/bin/python scripts/rednet_ablation.py down             # Sec. 4.5: stride-2 variants, PSNR side
    .venv/bin/python scripts/rednet_ablation.py levels           # Table 3: one blind model vs per-level ones
    .venv/bin/python scripts/rednet_ablation.py skips --plot-only

Each variant is `restorekit train configs/rednet/skip_ablation_sigma70.yaml --out runs/rednet/ablation/<study>/
<overrides> --resume --set ...` (printed before it runs): a finished run is skipped, an interrupted one resumes,
and a variant two studies share is trained once. Writes docs/img/rednet_<study>.png and
runs/rednet/ablation/<study>.md (final smoothed training loss, last
and best validation PSNR per variant; for `skips`, the with-minus-without gap at 20 and at 30 layers, the claim
that must reproduce: higher with skips, and a gap that grows with depth).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ablation import REPO, Ablation

CONFIG = REPO / "configs" / "rednet" / "skip_ablation_sigma70.yaml"
LEVEL_CONFIG = REPO / "configs" / "rednet" / "denoise_level_study.yaml"  # the `levels` study's own base
PER_LEVEL_SIGMAS = (10, 50)  # the two ends the per-level models are trained at (each costs a full run)
RUNS = REPO / "runs" / "rednet" / "ablation"
PLAIN = ["model.args.skip_step=0", "model.args.global_residual=false"]  # "without skip connections"
SAME = ["model.args.padding=same"]
STUDIES: dict[str, dict[str, list[str]]] = {  # study -> variant label -> --set overrides of the base config
    "skips": {
        "10 layers, no skips": ["model.args.depth=10", *PLAIN],
        "20 layers, no skips": ["model.args.depth=20", *PLAIN],
        "30 layers, no skips": ["model.args.depth=30", *PLAIN],
        "20 layers, skips": ["model.args.depth=20"],
        "30 layers, skips": ["model.args.depth=30"],
    },
    "shortcut_type": {
        "Block-2-RED": [*SAME, "model.args.skip_step=2"],
        "Block-2-He": [*SAME, "model.args.skip_step=2", "model.args.skips=residual"],
        "Block-4-RED": [*SAME, "model.args.skip_step=4"],
        "Block-4-He": [*SAME, "model.args.skip_step=4", "model.args.skips=residual"],
    },
    "width": {f"{w} filters": [f"model.args.features={w}"] for w in (32, 64, 128)},
    "kernel": {f"{k}x{k} filters": [f"model.args.kernel={k}"] for k in (3, 5, 7)},
    "down": {  # Sec. 4.5: stride 2 at these convs, mirrored stride-2 deconvs (the PSNR side of bench/rednet_speed.py);
        # 80 px patches for every variant: unpadded RED30 with strides at conv5 and conv9 needs 75 px
        "no down-sampling": ["model.args.depth=30", "data.train.patch=80"],
        **{f"down at {name}": ["model.args.depth=30", f"model.args.down=[{at}]", "data.train.patch=80"]
           for name, at in (("conv1", "1"), ("conv5", "5"), ("conv9", "9"), ("conv5+conv9", "5, 9"))},
    },
    "levels": {  # Table 3 at equal steps from one blind start (LEVEL_CONFIG): blind, or one sigma only
        "blind, sigma 10/30/50/70": [],
        **{f"sigma {s} only": [f"data.train.levels=['noise:sigma={s}']"] for s in PER_LEVEL_SIGMAS},
    },
}


def skip_verdict(last: dict[str, dict[str, float]]) -> str:
    """Fig. 6's claim: higher validation PSNR with skips, and a gap that grows from 20 to 30 layers."""
    psnr = {label: sum(v.values()) / len(v) for label, v in last.items()}
    gaps = {n: psnr[f"{n} layers, skips"] - psnr[f"{n} layers, no skips"] for n in (20, 30)}
    holds = gaps[20] > 0 and gaps[30] > 0 and gaps[30] > gaps[20]
    return (f"Skips minus no skips (last validation PSNR): 20 layers {gaps[20]:+.2f} dB, 30 layers {gaps[30]:+.2f} dB: "
            f"the paper's claim (higher with skips, the gap growing with depth) {'holds' if holds else 'does NOT hold'} "
            "at this budget.")


def level_verdict(last: dict[str, dict[str, float]]) -> str:
    """Table 3's claim: the one blind model within 0.3 dB of a per-level model at that model's sigma."""
    blind = last["blind, sigma 10/30/50/70"]
    gaps = {s: last[f"sigma {s} only"][f"noise:sigma={s}"] - blind[f"noise:sigma={s}"] for s in PER_LEVEL_SIGMAS
            if f"sigma {s} only" in last}
    cells = ", ".join(f"sigma {s} {gap:+.2f} dB" for s, gap in gaps.items())
    holds = all(gap <= 0.3 for gap in gaps.values())
    return (f"Per-level minus blind at the per-level model's sigma (last validation PSNR): {cells}: the paper's claim "
            f"(blind within 0.3 dB) {'holds' if holds else 'does NOT hold'} at this budget.")


REDNET = Ablation("rednet", CONFIG, RUNS, STUDIES, verdicts={"skips": skip_verdict, "levels": level_verdict},
                  study_configs={"levels": LEVEL_CONFIG},
                  val_labels={"levels": "PSNR (dB), McMaster grey, mean of sigma 10/30/50/70"},
                  loss_label="training MSE (running average)", val_label="PSNR (dB), McMaster grey, sigma 70")

if __name__ == "__main__":
    sys.exit(REDNET.main(description=__doc__.split("\n\n")[0]))
