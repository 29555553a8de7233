"""DL-Net's result tables (issue 15 acceptance): the trained runs of configs/dlnet scored in-process through
`restorekit eval`'s code (restorekit.evaluation) and written in the paper's layout beside its numbers.

    .venv/bin/python scripts/dlnet_tables.py                      # inpainting + interpolation (Tables II, III)
    .venv/bin/python scripts/dlnet_tables.py --sr                 # + SR with blur (Tables XII-XIV)
    .venv/bin/python scripts/dlnet_tables.py --only sr --datasets BSD100 --scales 2 --out runs/dlnet/bsd100_x2
    .venv/bin/python scripts/dlnet_tables.py --print-commands     # the training commands, nothing else
    .venv/bin/python scripts/dlnet_tables.py --only inpaint --limit 20 --out runs/dlnet_smoke   # a smoke
    .venv/bin/python scripts/dlnet_tables.py --model "Naive Likelihood (1e4)=runs/dlnet/inpaint_naive_1e4/final.safetensors"

Inpainting / interpolation: every method's run `RUNS/<task>_<method>/final.safetensors` (configs/dlnet/<task>_
<method>.yaml) on the fixed test sets of scripts/dlnet_test_sets.py (paired folders whose degraded files carry
their records, so DL-Net gets each input's own), with `--task inpaint|interpolate`: cells are l1 / l2 on [-1, 1]
images (`l1_pm1`, `l2_pm1`) / mean per-image PSNR (peak-to-peak 2 on [-1, 1] = PSNR on [0, 1], spec 1.7's reading),
raw network output (Tables II-V; the composite of Tables VI-VII is not computed). A method not trained yet is a
row saying so. The paper's CelebA rows follow each table, and a line states, per level, whether DL-Net beats
rigid-joint (the claim whose pattern must reproduce).

SR with blur (`--sr`): Set5, Set14 and BSD100 (top-left 480x320, as the SR benchmark) on the Y channel (MATLAB
rgb2ycbcr, border crop = scale), inputs `blur:kind=gaussian,width=u+down:scale=S` (MATLAB-bicubic downscale, LR
rounded to 8 bits) for u = 0, 1.3, 2.6 and S = 2, 3, 4, i.e. `restorekit eval --task sr --scale S --degrade SPEC
--grey y`: bicubic, the released VDSR and IDN (the bicubic-trained references, ../shared/reference-weights) and
the DL-Net runs of DLNET_SR_RUNS under RUNS; cells are x2 / x3 / x4 as in Tables XII-XIV, which follow.

Writes OUT/dlnet_tables.md and OUT/dlnet_results.json (default OUT = runs/dlnet). CPU: the 64x64 sets take
seconds per method and set (680 pairs); SR on all three benchmarks is hours for VDSR-size models on one core
(BSD100 is 100 images of 480x320): use --datasets Set5 and --limit for a quick look.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from dlnet_test_sets import ROOT as TEST_ROOT  # noqa: E402
from dlnet_test_sets import dlnet_sets, set_root  # noqa: E402

from restorekit import evaluation, paths  # noqa: E402
from restorekit.atomic import write_json  # noqa: E402
from restorekit.zoo import load_model  # noqa: E402

RUNS = REPO / "runs" / "dlnet"
REFERENCE_WEIGHTS = REPO.parent / "shared" / "reference-weights"
METHODS = {  # row label -> run / config name suffix (configs/dlnet/<task>_<suffix>.yaml)
    "Autoencoder (Default)": "reference",
    "Autoencoder (Joint) [9]": "joint",
    "On-Demand Learning [9]": "on_demand",
    "Multi-Task Learning [15]": "multitask",
    "Naive Likelihood (λ = 10³)": "naive_likelihood",
    "DL-Net": "dlnet",
}
TASKS = {"inpaint": ("II", "inpainting"), "interp": ("III", "interpolation")}

# Spec 1.9: CelebA Tables II and III, (l1, l2, PSNR) per column in the test sets' order.
PAPER = {
    "inpaint": {
        "Autoencoder (Default)": [(0.2556, 0.1269, 15.49), (0.2482, 0.1299, 15.38), (0.2600, 0.1733, 14.17), (0.2470, 0.1226, 15.62)],
        "Autoencoder (Joint) [9]": [(0.0227, 0.0015, 35.00), (0.0305, 0.0040, 30.87), (0.0494, 0.0118, 26.13), (0.0295, 0.0035, 31.50)],
        "On-Demand Learning [9]": [(0.0230, 0.0015, 34.93), (0.0307, 0.0040, 30.85), (0.0496, 0.0118, 26.12), (0.0299, 0.0036, 31.43)],
        "Multi-Task Learning [15]": [(0.0178, 0.0010, 36.65), (0.0263, 0.0036, 31.37), (0.0470, 0.0118, 26.11), (0.0253, 0.0032, 32.06)],
        "Naive Likelihood (λ = 10³)": [None, (0.0296, 0.0040, 30.96), None, (0.0287, 0.0035, 31.61)],  # Table I
        "DL-Net": [(0.0129, 0.0008, 38.47), (0.0214, 0.0033, 32.03), (0.0413, 0.0110, 26.54), (0.0205, 0.0028, 32.82)],
    },
    "interp": {
        "Autoencoder (Default)": [(0.0924, 0.0159, 24.64), (0.0527, 0.0062, 28.59), (0.0565, 0.0095, 26.78), (0.0705, 0.0112, 26.67)],
        "Autoencoder (Joint) [9]": [(0.0256, 0.0017, 34.36), (0.0347, 0.0036, 31.07), (0.0597, 0.0104, 26.32), (0.0345, 0.0037, 31.68)],
        "On-Demand Learning [9]": [(0.0251, 0.0016, 34.50), (0.0343, 0.0035, 31.15), (0.0589, 0.0102, 26.41), (0.0340, 0.0036, 31.78)],
        "Multi-Task Learning [15]": [(0.0216, 0.0013, 35.58), (0.0335, 0.0034, 31.24), (0.0619, 0.0110, 26.05), (0.0327, 0.0035, 32.22)],
        "DL-Net": [(0.0138, 0.0007, 38.35), (0.0240, 0.0023, 33.09), (0.0488, 0.0083, 27.42), (0.0233, 0.0024, 34.51)],
    },
}

# SR with blur: spec 1.9 Tables XII (Set5), XIII (Set14), XIV (BSD100); per u, (x2, x3, x4) PSNR on Y.
SR_WIDTHS = (0.0, 1.3, 2.6)
SR_SCALES = (2, 3, 4)
SR_DATASETS = {"Set5": ("XII", None), "Set14": ("XIII", None), "BSD100": ("XIV", (480, 320))}
PAPER_SR = {
    "Set5": {
        "Bicubic": [(33.66, 30.39, 28.42), (29.02, 26.57, 24.78), (26.13, 25.32, 24.33)],
        "VDSR": [(37.62, 33.89, 31.56), (30.65, 30.36, 29.88), (26.39, 26.34, 26.33)],
        "VDSR (DL-Net)": [(36.47, 33.28, 31.09), (36.25, 33.28, 31.17), (34.97, 32.89, 30.99)],
        "DRRN": [(37.82, 34.23, 31.86), (30.65, 30.30, 29.83), (26.39, 26.35, 26.31)],
        "DRRN (DL-Net)": [(37.32, 33.76, 31.34), (37.39, 33.83, 31.41), (36.76, 33.53, 31.41)],
        "IDN": [(37.73, 34.07, 31.76), (30.64, 30.32, 29.88), (26.39, 26.35, 26.33)],
        "IDN (DL-Net)": [(37.07, 33.49, 31.24), (37.05, 33.58, 31.27), (36.50, 33.32, 31.14)],
        "SRMDNF [10]": [(37.79, 34.12, 31.96), (37.45, 34.16, 31.99), (34.12, 33.02, 31.77)],
    },
    "Set14": {
        "VDSR": [(33.12, 29.88, 28.15), (27.93, 27.58, 27.09), (24.61, 24.58, 24.55)],
        "VDSR (DL-Net)": [(32.49, 29.53, 27.86), (32.28, 29.58, 27.93), (30.89, 29.30, 27.74)],
        "DRRN": [(33.39, 30.03, 28.32), (27.93, 27.53, 27.08), (24.61, 24.59, 24.54)],
        "DRRN (DL-Net)": [(33.10, 29.85, 28.06), (33.18, 29.97, 28.11), (32.19, 29.77, 28.01)],
        "IDN": [(33.28, 29.97, 28.21), (27.93, 27.54, 27.12), (24.61, 24.59, 24.56)],
        "IDN (DL-Net)": [(32.83, 29.71, 27.99), (32.89, 29.73, 28.02), (32.14, 29.52, 27.92)],
    },
    "BSD100": {
        "VDSR": [(31.96, 28.87, 27.34), (27.66, 27.24, 26.67), (24.97, 24.94, 24.88)],
        "VDSR (DL-Net)": [(31.49, 28.67, 27.20), (31.44, 28.71, 27.25), (30.09, 28.57, 27.20)],
        "DRRN": [(32.13, 29.02, 27.44), (27.66, 27.21, 26.65), (24.97, 24.94, 24.87)],
        "DRRN (DL-Net)": [(31.98, 28.88, 27.32), (32.10, 28.94, 27.36), (31.35, 28.88, 27.34)],
        "IDN": [(32.05, 28.94, 27.40), (27.66, 27.22, 26.67), (24.97, 24.94, 24.88)],
        "IDN (DL-Net)": [(31.83, 28.82, 27.26), (31.93, 28.89, 27.30), (31.20, 28.83, 27.30)],
    },
}


# DL-Net on VDSR as trained on this CPU: run folder -> (scale, steps, lr /10 at, the run whose weights it starts
# from; None: the released VDSR of the config). The tables' x2 row is the second x2 stage; x3 / x4 start from the
# first x2 model too (VDSR is one network for every scale). The zoo cards (scripts/publish_dlnet.py) say the same.
VDSR_SR_STAGES = {
    "sr_dlnet_vdsr_x2": (2, 1000, 800, None),
    "sr_dlnet_vdsr_x2_cont": (2, 1000, 800, "sr_dlnet_vdsr_x2"),
    "sr_dlnet_vdsr_x3": (3, 600, 480, "sr_dlnet_vdsr_x2"),
    "sr_dlnet_vdsr_x4": (4, 150, 120, "sr_dlnet_vdsr_x2"),
}
# DL-Net on IDN: each scale from the released IDN of that scale (IDN has one network per scale), 1,000 steps with
# the lr /10 at 800 (the config's 1,500 cut to the budget of VDSR's x2 stages).
IDN_SR_BUDGET = (1000, 800)
DLNET_SR_RUNS = {"vdsr": {2: "sr_dlnet_vdsr_x2_cont", 3: "sr_dlnet_vdsr_x3", 4: "sr_dlnet_vdsr_x4"},
                 "idn": {s: f"sr_dlnet_idn_x{s}" for s in SR_SCALES}}
# DRRN has no released weights: a small one (32 features) trained here from scratch at x2, plain on bicubic (its
# reference) and in the module over u ~ U[0, 3], each by its own config at the same budget.
DRRN_SMALL_RUNS = {"DRRN-32": "sr_drrn_small_reference_x2", "DRRN-32 (DL-Net)": "sr_dlnet_drrn_small_x2"}


def sr_train_command(backbone: str, out: Path | str, scale: int, *, init: str | None = None, steps: int | None = None,
                     milestone: int | None = None, resume: bool = True) -> str:
    """`restorekit train` of configs/dlnet/sr_dlnet_<backbone>_x2.yaml at `scale`, from `init` (default: the
    config's released weights), with the step budget overridden where given."""
    sets = [] if scale == 2 else [f"data.train.scale={scale}", f"model.args.scale={scale}",
                                  f"name=dlnet_sr_dlnet_{backbone}_x{scale}"]
    if init:
        sets.append(f"model.init={init}")
    if steps:
        sets += [f"train.steps={steps}", f"train.scheduler.milestones=[{milestone}]"]
    extra = "".join(f" --set {shlex.quote(x)}" for x in sets)
    return f"restorekit train configs/dlnet/sr_dlnet_{backbone}_x2.yaml --out {out}{' --resume' if resume else ''}{extra}"


def sr_models(runs: Path) -> dict[str, dict[int, tuple[str, dict]]]:
    """Row label -> scale -> (model name or weights file, load_model arguments)."""
    vdsr = str(REFERENCE_WEIGHTS / "vdsr_official.mat")
    return {
        "Bicubic": {s: ("bicubic", {"scale": s}) for s in SR_SCALES},
        "VDSR": {s: (vdsr, {}) for s in SR_SCALES},
        "VDSR (DL-Net)": {s: (str(runs / run / "final.safetensors"), {}) for s, run in DLNET_SR_RUNS["vdsr"].items()},
        "IDN": {s: (str(REFERENCE_WEIGHTS / f"idn_x{s}.safetensors"), {"scale": s}) for s in SR_SCALES},
        "IDN (DL-Net)": {s: (str(runs / run / "final.safetensors"), {}) for s, run in DLNET_SR_RUNS["idn"].items()},
        **{label: {2: (str(runs / run / "final.safetensors"), {})} for label, run in DRRN_SMALL_RUNS.items()},
    }


def config_train_command(run: str, runs: Path) -> str:
    """`restorekit train` of configs/dlnet/<run>.yaml as it stands, into runs/<run> (resumable)."""
    return f"restorekit train configs/dlnet/{run}.yaml --out {runs / run} --resume"


def train_commands(runs: Path) -> list[str]:
    """Every training run the tables read, in dependency order (references first)."""
    runs = runs.relative_to(REPO) if runs.is_absolute() and runs.is_relative_to(REPO) else runs
    out = [config_train_command(f"{task}_{suffix}", runs) for task in TASKS for suffix in METHODS.values()]
    for run, (scale, steps, milestone, start) in VDSR_SR_STAGES.items():
        init = str(runs / start / "final.safetensors") if start else None
        out.append(sr_train_command("vdsr", runs / run, scale, init=init, steps=steps, milestone=milestone))
    for scale, run in DLNET_SR_RUNS["idn"].items():
        init = None if scale == 2 else f"../shared/reference-weights/idn_x{scale}.safetensors"
        out.append(sr_train_command("idn", runs / run, scale, init=init, steps=IDN_SR_BUDGET[0],
                                    milestone=IDN_SR_BUDGET[1]))
    out += [config_train_command(run, runs) for run in DRRN_SMALL_RUNS.values()]
    return out


def score_sets(task: str, models: dict[str, Path], sets_root: Path, limit: int | None, cache: Path) -> dict:
    """{method: {set name: {l1_pm1, l2_pm1, psnr, n} or None (not trained)}} for one task's test sets, each
    evaluation cached under `cache` (see cached_eval): processes scoring different rows fill one cache, and a
    last run with every row writes the whole table from it."""
    results: dict[str, dict] = {}
    chosen = [s for s in dlnet_sets() if s.name.startswith(task)]
    for label, weights in models.items():
        if not weights.is_file():
            results[label] = None
            continue
        results[label] = {}
        for test_set in chosen:
            folder = sets_root / test_set.name
            if not folder.is_dir():
                raise SystemExit(f"{folder}: no such test set; make it with scripts/dlnet_test_sets.py")
            result = cached_eval(cache / test_set.name / f"{slug(label)}.json", str(weights), {}, folder,
                                 evaluation.default_setup(test_set.task), limit)
            results[label][test_set.name] = {k: result[k] for k in ("l1_pm1", "l2_pm1", "psnr")} | {"n": result["n_images"]}
            print(f"{label:28s} {test_set.name:22s} l1 {result['l1_pm1']:.4f}  l2 {result['l2_pm1']:.4f}  "
                  f"PSNR {result['psnr']:.2f}  ({result['n_images']} pairs)", flush=True)
    return results


def cell(values) -> str:
    return "—" if values is None else f"{values[0]:.4f} / {values[1]:.4f} / {values[2]:.2f}"


def task_table(task: str, results: dict, sets_label: str) -> str:
    number, noun = TASKS[task]
    chosen = [s for s in dlnet_sets() if s.name.startswith(task)]
    head = "| Method | " + " | ".join(s.column for s in chosen) + " |"
    rule = "|---|" + "---|" * len(chosen)
    lines = [f"### {noun.capitalize()} (Table {number} layout; l1 / l2 on [-1, 1] / PSNR), {sets_label}", "", head, rule]
    for label, sets in results.items():
        if sets is None:
            lines.append(f"| {label} | " + " | ".join(["not trained"] * len(chosen)) + " |")
        else:
            lines.append(f"| {label} | " + " | ".join(
                cell((sets[s.name]["l1_pm1"], sets[s.name]["l2_pm1"], sets[s.name]["psnr"])) for s in chosen) + " |")
    lines += ["", pattern_line(task, results, chosen), "",
              f"Paper, CelebA (Table {number}; the naive likelihood from Table I):", "", head, rule]
    for label, cells in PAPER[task].items():
        lines.append(f"| {label} | " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def pattern_line(task: str, results: dict, chosen) -> str:
    """The paper's claim at each level: DL-Net better than rigid-joint (PSNR), said plainly either way."""
    dlnet, joint = results.get("DL-Net"), results.get("Autoencoder (Joint) [9]")
    if dlnet is None or joint is None:
        return "DL-Net vs rigid-joint: not both trained yet."
    parts = []
    for s in chosen:
        gain = dlnet[s.name]["psnr"] - joint[s.name]["psnr"]
        parts.append(f"{s.column}: {gain:+.2f} dB ({'better' if gain > 0 else 'NOT better'})")
    verdict = "holds at every level" if all("NOT" not in p for p in parts) else "does NOT hold at every level"
    return f"DL-Net vs rigid-joint (PSNR): {'; '.join(parts)}. The paper's pattern {verdict}."


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_").lower()


def cached_eval(path: Path, source: str, arguments: dict, folder: Path, setup, limit: int | None) -> dict:
    """`evaluation.evaluate_cached` of the model file (or built-in) `source` built with `arguments`."""
    key = {"source": source, "arguments": arguments, "file": evaluation.file_stamp(Path(source))}
    return evaluation.evaluate_cached(path, key, lambda: load_model(source, **arguments), folder, setup, limit)


def score_sr(runs: Path, datasets: list[str], limit: int | None, scales: tuple[int, ...] = SR_SCALES,
             cache: Path = RUNS / "sr_cache", rows: tuple[str, ...] = (), cached_only: bool = False) -> dict:
    """{dataset: {label: {u: {scale: psnr or None}}}} (None: not trained, a scale left out, or with `cached_only`
    a cell not in the cache yet); each evaluation cached under `cache` (see cached_eval)."""
    out: dict = {}
    for dataset in datasets:
        folder = paths.resolve_dataset(dataset)
        out[dataset] = {}
        for label, per_scale in sr_models(runs).items():
            if rows and label not in rows:
                continue
            out[dataset][label] = {}
            for u in SR_WIDTHS:
                out[dataset][label][u] = {}
                for s in SR_SCALES:
                    source, arguments = per_scale.get(s, ("", {}))  # a scale the row has no model for: '—'
                    if s not in scales or (source != "bicubic" and not Path(source).is_file()):
                        out[dataset][label][u][s] = None
                        continue
                    setup = evaluation.default_setup("sr", scale=s, degrade=f"blur:kind=gaussian,width={u:g}+down:scale={s}",
                                                     grey="y")
                    setup = replace(setup, crop_to=SR_DATASETS[dataset][1])
                    cell = cache / dataset / f"{slug(label)}_u{u:g}_x{s}.json"
                    if cached_only and not cell.is_file():
                        out[dataset][label][u][s] = None
                        continue
                    result = cached_eval(cell, source, arguments, folder, setup, limit)
                    out[dataset][label][u][s] = result["psnr"]
                    print(f"{dataset:7s} {label:14s} u={u:g} x{s}: {result['psnr']:.2f} dB ({result['n_images']} images)",
                          flush=True)
    return out


def sr_tables(results: dict) -> str:
    lines = []
    for dataset, rows in results.items():
        number = SR_DATASETS[dataset][0]
        head = "| Method | " + " | ".join(f"u = {u:.1f}" for u in SR_WIDTHS) + " |"
        rule = "|---|" + "---|" * len(SR_WIDTHS)
        lines += [f"### SR with blur on {dataset} (Table {number} layout; PSNR on Y, x2 / x3 / x4)", "", head, rule]
        for label, per_u in rows.items():
            cells = [" / ".join("—" if per_u[u][s] is None else f"{per_u[u][s]:.2f}" for s in SR_SCALES) for u in SR_WIDTHS]
            lines.append(f"| {label} (ours) | " + " | ".join(cells) + " |")
        for label, per_u in PAPER_SR[dataset].items():
            lines.append(f"| {label} (paper) | " + " | ".join(" / ".join(f"{v:.2f}" for v in c) for c in per_u) + " |")
        lines.append("")
    set5 = results.get("Set5")
    if set5:
        for backbone in ("VDSR", "IDN", "DRRN-32"):
            if f"{backbone} (DL-Net)" not in set5 or backbone not in set5:
                continue
            ours, ref = set5[f"{backbone} (DL-Net)"], set5[backbone]
            if ours[2.6][2] is None or ref[2.6][2] is None:
                continue
            gain, drop = ours[2.6][2] - ref[2.6][2], ref[0.0][2] - ours[0.0][2]
            lines.append(f"Acceptance, {backbone} Set5 x2: DL-Net {gain:+.2f} dB over the reference at u = 2.6 (needs >= +3), "
                         f"{drop:.2f} dB below it at u = 0 (needs <= 0.5): "
                         f"{'met' if gain >= 3 and drop <= 0.5 else 'NOT met'}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(RUNS), help="where the training runs are (default runs/dlnet)")
    parser.add_argument("--sets", default=None, help="test-set root (default runs/dlnet/test_sets/CBSD68_64)")
    parser.add_argument("--out", default=None, help="where the tables go (default: --runs)")
    parser.add_argument("--only", choices=("inpaint", "interp", "sr"), help="one part only")
    parser.add_argument("--sr", action="store_true", help="also the SR-with-blur tables (slow: see the docstring)")
    parser.add_argument("--datasets", default="Set5,Set14,BSD100", help="SR benchmarks (comma-separated)")
    parser.add_argument("--limit", type=int, help="first N pairs of each 64x64 set / N images of each SR set")
    parser.add_argument("--scales", default="2,3,4", help="SR scales to score (comma-separated; the rest are '—')")
    parser.add_argument("--rows", default="", help="rows to score, e.g. 'IDN,IDN (DL-Net)' or 'DL-Net' (default: "
                        "all); several processes with different rows fill one cache in parallel")
    parser.add_argument("--cached-only", action="store_true", help="SR: write the tables from the cells already "
                        "cached, '—' for the rest (nothing is evaluated unless a cached cell is stale)")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=WEIGHTS",
                        help="another row for the inpainting/interpolation tables (task from --only, default both)")
    parser.add_argument("--print-commands", action="store_true", help="print the training commands and stop")
    args = parser.parse_args(argv)
    runs = Path(args.runs)
    if args.print_commands:
        print("\n".join([".venv/bin/python scripts/dlnet_test_sets.py", *train_commands(runs)]))
        return 0
    out = Path(args.out) if args.out else runs
    sets_root = Path(args.sets) if args.sets else set_root("CBSD68", TEST_ROOT)
    extra = dict(item.split("=", 1) for item in args.model)
    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    results: dict = {}
    parts = []
    for task in TASKS:
        if args.only not in (None, task):
            continue
        models = {label: runs / f"{task}_{suffix}" / "final.safetensors" for label, suffix in METHODS.items()}
        models.update({label: Path(path) for label, path in extra.items()})
        models = {label: path for label, path in models.items() if not rows or label in rows}
        results[task] = score_sets(task, models, sets_root, args.limit, cache=out / "cache" / task)
        parts.append(task_table(task, results[task], f"{sets_root.name} ({args.limit or 'all'} pairs per set)"))
    if args.sr or args.only == "sr":
        scales = tuple(int(v) for v in args.scales.split(","))
        results["sr"] = score_sr(runs, args.datasets.split(","), args.limit, scales, cache=out / "sr_cache", rows=rows,
                                 cached_only=args.cached_only)
        parts.append(sr_tables(results["sr"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "dlnet_tables.md").write_text("## DL-Net results (scripts/dlnet_tables.py)\n\n" + "\n".join(parts))
    write_json(out / "dlnet_results.json", json.loads(json.dumps(results, default=str)))
    print(f"wrote {out / 'dlnet_tables.md'} and {out / 'dlnet_results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
