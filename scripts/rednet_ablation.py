"""RED-Net's training analyses (issue 16; paper Sec. 4.3-4.4, Figs. 6-7): variants of one base config trained at
equal steps, their training loss and validation PSNR plotted against the step, and a table of where each ends.

    .venv/bin/python scripts/rednet_ablation.py skips            # Fig. 6: 10/20/30 layers, with and without skips
    .venv/bin/python scripts/rednet_ablation.py shortcut_type    # Fig. 7: RED's symmetric skips vs He et al.'s
    .venv/bin/python scripts/rednet_ablation.py width kernel     # the filter number and size sweeps
    .venv/bin/python scripts/rednet_ablation.py down             # Sec. 4.5: stride-2 variants, PSNR side
    .venv/bin/python scripts/rednet_ablation.py skips --plot-only

Each variant is `restorekit train configs/rednet/skip_ablation_sigma70.yaml --out runs/rednet/ablation/<study>/
<overrides> --resume --set ...` (printed before it runs): a finished run is skipped, an interrupted one resumes,
and a variant two studies share is trained once. Writes docs/img/rednet_<study>.png and
runs/rednet/ablation/<study>.md (final smoothed training loss, last
and best validation PSNR per variant; for `skips`, the with-minus-without gap at 20 and at 30 layers, the claim
that must reproduce: higher with skips, and a gap that grows with depth).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "rednet" / "skip_ablation_sigma70.yaml"
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
    "down": {  # Sec. 4.5: stride 2 at these convs, mirrored stride-2 deconvs (the PSNR side of bench/rednet_speed.py)
        "no down-sampling": ["model.args.depth=30"],
        **{f"down at {name}": ["model.args.depth=30", f"model.args.down=[{at}]"]
           for name, at in (("conv1", "1"), ("conv5", "5"), ("conv9", "9"), ("conv5+conv9", "5, 9"))},
    },
}


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def run_folder(study: str, label: str) -> Path:
    """Named by the overrides, so a variant that two studies share (RED30 with skips) is trained once."""
    return RUNS / (slug("_".join(STUDIES[study][label])).replace("model_args_", "") or "base")


def train_command(study: str, label: str) -> list[str]:
    out = run_folder(study, label)
    sets = [arg for item in STUDIES[study][label] for arg in ("--set", item)]
    return [str(REPO / ".venv" / "bin" / "restorekit"), "train", str(CONFIG), "--out", str(out), "--resume",
            "--set", f"name=rednet_ablation_{out.name}", *sets]


def read_log(run: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, loss) and (step, validation PSNR at the single level) from the run's log.jsonl."""
    losses, psnrs = [], []
    for line in (run / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            losses.append((row["step"], row["loss_avg"]))
        if row.get("val_psnr"):
            psnrs.append((row["step"], sum(row["val_psnr"].values()) / len(row["val_psnr"])))
    return losses, psnrs


def summarise(study: str, logs: dict[str, tuple[list, list]]) -> str:
    lines = [f"| variant ({study}) | steps | training loss (last avg) | val PSNR last (dB) | best (dB) |",
             "|---|---:|---:|---:|---:|"]
    last = {}
    for label, (losses, psnrs) in logs.items():
        last[label] = psnrs[-1][1] if psnrs else float("nan")
        best = max(p for _, p in psnrs) if psnrs else float("nan")
        lines.append(f"| {label} | {losses[-1][0] if losses else 0} | {losses[-1][1]:.5f} | {last[label]:.2f} | "
                     f"{best:.2f} |" if losses else f"| {label} | not trained | | | |")
    if study == "skips" and all(k in last for k in STUDIES["skips"]):
        gaps = {n: last[f"{n} layers, skips"] - last[f"{n} layers, no skips"] for n in (20, 30)}
        holds = gaps[20] > 0 and gaps[30] > 0 and gaps[30] > gaps[20]
        lines += ["", f"Skips minus no skips (last validation PSNR): 20 layers {gaps[20]:+.2f} dB, 30 layers "
                      f"{gaps[30]:+.2f} dB: the paper's claim (higher with skips, the gap growing with depth) "
                      f"{'holds' if holds else 'does NOT hold'} at this budget."]
    return "\n".join(lines) + "\n"


def plot(study: str, logs: dict[str, tuple[list, list]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, (losses, psnrs) in logs.items():
        if losses:
            left.plot(*zip(*losses), label=label)
        if psnrs:
            right.plot(*zip(*psnrs), marker="o", markersize=3, label=label)
    left.set(xlabel="step", ylabel="training MSE (running average)", yscale="log", title="training loss")
    right.set(xlabel="step", ylabel="PSNR (dB)", title="validation (McMaster grey, sigma 70)")
    right.legend(fontsize=8)
    fig.suptitle(f"RED-Net {study} study ({CONFIG.relative_to(REPO)}, equal steps)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_study(study: str, plot_only: bool) -> None:
    logs = {}
    for label in STUDIES[study]:
        run = run_folder(study, label)
        if not plot_only and not (run / "final.safetensors").is_file():
            command = train_command(study, label)
            print(shlex.join(command), flush=True)
            subprocess.run(command, check=True, cwd=REPO)
        if (run / "log.jsonl").is_file():
            logs[label] = read_log(run)
    summary = summarise(study, logs)
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / f"{study}.md").write_text(summary)
    plot(study, logs, REPO / "docs" / "img" / f"rednet_{study}.png")
    print(summary)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("studies", nargs="+", choices=sorted(STUDIES))
    p.add_argument("--plot-only", action="store_true", help="no training: plot and summarise the runs there are")
    args = p.parse_args(argv)
    for study in args.studies:
        run_study(study, args.plot_only)


if __name__ == "__main__":
    sys.exit(main())
