"""Training ablations as data: variants of one base config trained at equal steps (each a `restorekit train
BASE --set ...` run), their training loss and validation PSNR plotted against the step, and a table of where each
ends. The papers' analyses (scripts/rednet_ablation.py: RED-Net Figs. 6-7; scripts/mbn_ablation.py: MBN Table 1)
are an `Ablation` each: the base config, the studies (variant label -> overrides) and a verdict per study.

A variant's run folder is named by its overrides, so a variant two studies share is trained once; a finished
run is skipped and an interrupted one resumes (`--resume`), so a study can be stopped and restarted at will.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
Log = tuple[list[tuple[int, float]], list[tuple[int, dict[str, float]]]]  # (step, loss), (step, PSNR per level)


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def read_log(run: Path, until: int | None = None) -> Log:
    """(step, running-average loss) and (step, validation PSNR per level) from a run's log.jsonl, up to step
    `until` (a longer run read at a shorter study's budget)."""
    losses, psnrs = [], []
    for line in (run / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if until is not None and row.get("step", 0) > until:
            break
        if "loss" in row:
            losses.append((row["step"], row["loss_avg"]))
        if row.get("val_psnr"):
            psnrs.append((row["step"], dict(row["val_psnr"])))
    return losses, psnrs


def mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values)


@dataclass
class Ablation:
    """name: prefix of run names and figures; config: the base; runs: where variants train; studies: study ->
    variant label -> --set overrides; verdicts: study -> f(last validation PSNR per variant and level) -> a line
    saying whether the paper's claim holds; reuse: variant label -> an existing run of the base config that IS that
    variant (same config and seed, e.g. the recipe's own run), read instead of training it again; study_configs:
    study -> its own base config instead of `config` (its runs in a folder named after it); loss_label /
    val_label: the plot's axes (val_labels: per study, where a study validates otherwise)."""

    name: str
    config: Path
    runs: Path
    studies: dict[str, dict[str, list[str]]]
    verdicts: dict[str, Callable[[dict[str, dict[str, float]]], str]] = field(default_factory=dict)
    reuse: dict[str, Path] = field(default_factory=dict)
    study_configs: dict[str, Path] = field(default_factory=dict)
    loss_label: str = "training loss (running average)"
    val_label: str = "validation PSNR (dB)"
    val_labels: dict[str, str] = field(default_factory=dict)
    log_loss: bool = True
    figures: Path = REPO / "docs" / "img"
    steps: int | None = None  # a shorter study than the base config's (--steps): train.steps for every variant

    def overrides(self, study: str, label: str) -> list[str]:
        return [*self.studies[study][label], *([f"train.steps={self.steps}"] if self.steps else [])]

    def config_of(self, study: str) -> Path:
        return self.study_configs.get(study, self.config)

    def run_folder(self, study: str, label: str) -> Path:
        if label in self.reuse:
            return self.reuse[label]
        runs = self.runs / self.study_configs[study].stem if study in self.study_configs else self.runs
        return runs / (slug("_".join(self.overrides(study, label))).replace("model_args_", "") or "base")

    def train_command(self, study: str, label: str) -> list[str]:
        out = self.run_folder(study, label)
        sets = [arg for item in self.overrides(study, label) for arg in ("--set", item)]
        return [str(REPO / ".venv" / "bin" / "restorekit"), "train", str(self.config_of(study)), "--out", str(out),
                "--resume", "--set", f"name={self.name}_ablation_{out.name}", *sets]

    def summarise(self, study: str, logs: dict[str, Log]) -> str:
        levels = sorted({k for _, (_, psnrs) in logs.items() for _, row in psnrs for k in row})
        per_level = " | ".join(f"{lv} last" for lv in levels) if len(levels) > 1 else ""
        head = f"| variant ({study}) | steps | training loss (last avg) | " + (per_level + " | " if per_level else "") \
            + "val PSNR last, mean (dB) | best mean (dB) |"
        lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
        last: dict[str, dict[str, float]] = {}
        for label, (losses, psnrs) in logs.items():
            if not losses:
                lines.append(f"| {label} | not trained |" + " |" * (head.count("|") - 3))
                continue
            last[label] = psnrs[-1][1] if psnrs else {}
            best = max((mean(p) for _, p in psnrs), default=math.nan)
            cells = [f"{last[label].get(lv, math.nan):.2f}" for lv in levels] if per_level else []
            lines.append(f"| {label} | {losses[-1][0]} | {losses[-1][1]:.5f} | " + "".join(c + " | " for c in cells)
                         + f"{mean(last[label]) if last[label] else math.nan:.2f} | {best:.2f} |")
        verdict = self.verdicts.get(study)
        done = {label: row for label, row in last.items() if row}
        if verdict is not None and len(done) >= 2:
            try:  # a verdict may judge the variants trained so far (--variants), or need them all
                lines += ["", verdict(done)]
            except KeyError as missing:
                lines += ["", f"Verdict waits for {missing}."]
        return "\n".join(lines) + "\n"

    def plot(self, study: str, logs: dict[str, Log], path: Path) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for label, (losses, psnrs) in logs.items():
            if losses:
                left.plot(*zip(*losses), label=label)
            if psnrs:
                right.plot([s for s, _ in psnrs], [mean(p) for _, p in psnrs], marker="o", markersize=3, label=label)
        left.set(xlabel="step", ylabel=self.loss_label, yscale="log" if self.log_loss else "linear",
                 title="training loss")
        right.set(xlabel="step", ylabel=self.val_labels.get(study, self.val_label), title="validation")
        right.legend(fontsize=8)
        fig.suptitle(f"{self.name} {study} study ({self.config_of(study).relative_to(REPO)}, equal steps)")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def run_study(self, study: str, plot_only: bool, variants: list[str] | None = None) -> str:
        """Train the study's unfinished variants (those in `variants`, default all), then plot and summarise."""
        logs = {}
        for label in self.studies[study]:
            run = self.run_folder(study, label)
            wanted = variants is None or label in variants
            if wanted and not plot_only and not (run / "final.safetensors").is_file():
                command = self.train_command(study, label)
                print(shlex.join(command), flush=True)
                subprocess.run(command, check=True, cwd=REPO)
            logs[label] = read_log(run, self.steps) if (run / "log.jsonl").is_file() else ([], [])
        summary = self.summarise(study, logs)
        self.runs.mkdir(parents=True, exist_ok=True)
        suffix = f"_steps{self.steps}" if self.steps else ""
        (self.runs / f"{study}{suffix}.md").write_text(summary)
        self.plot(study, logs, self.figures / f"{self.name}_{study}{suffix}.png")
        print(summary)
        return summary

    def main(self, argv: list[str] | None = None, description: str = "") -> int:
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("studies", nargs="+", choices=sorted(self.studies))
        parser.add_argument("--plot-only", action="store_true", help="no training: plot and summarise the runs there are")
        parser.add_argument("--variant", action="append", dest="variants", metavar="LABEL",
                            help="train only this variant (repeatable; default: all); the others are summarised if "
                                 "trained, else shown as not trained")
        parser.add_argument("--steps", type=int, help="train every variant this many steps instead of the base "
                                                       "config's (own run folders; a reused longer run is read up to it)")
        args = parser.parse_args(argv)
        variants, self.steps = args.variants, args.steps
        unknown = sorted(set(variants or ()) - {label for study in args.studies for label in self.studies[study]})
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; the studies' variants: "
                         + "; ".join(label for study in args.studies for label in self.studies[study]))
        for study in args.studies:
            self.run_study(study, args.plot_only, variants)
        return 0
