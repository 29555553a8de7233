"""The thesis's Table 7.1 pattern (issue 18 acceptance): MEPSNet and the baselines, all trained on SHDD-moderate only
at one budget (configs/mepsnet/*_cpu.yaml), scored on an SHDD test built from BSD100 at the easy / moderate /
difficult levels, through `restorekit eval`'s code (restorekit.evaluation), beside the thesis's numbers.

    .venv/bin/python scripts/shdd_table.py                       # every trained run, 50 images per level
    .venv/bin/python scripts/shdd_table.py --rows MEPSNet,Input  # some rows
    .venv/bin/python scripts/shdd_table.py --print-commands      # the training commands

Test set: the first `--limit` (default 50: the thesis tests on 50 DIV2K validation images) BSD100 images (BSDS300
test; training used BSD200 = BSDS300 train), each distorted once per level with `shdd:level=LEVEL` (2 / 3 / 4
regions, one of identity / Gaussian noise / Gaussian blur / pink noise / contrast each, the thesis's ranges),
seeded by the image's name (`--seed-mode name`), the same input for every model; the thesis makes 12 versions per
image. Protocol (the thesis does not state it; the reference code's): RGB PSNR / SSIM, no border crop, outputs
clamped and rounded to 8 bits. An image whose regions all drew identity is undistorted: its Input PSNR is infinite
and left out of the Input row's mean (said in the table); the models are scored on it like any other.

Each evaluation is cached under OUT/cache (restorekit.evaluation.evaluate_cached): a stopped run resumes. Writes
OUT/shdd_table.md and OUT/shdd_results.json (default OUT = runs/mepsnet/tables).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from restorekit import evaluation, paths  # noqa: E402
from restorekit.atomic import write_bytes, write_json  # noqa: E402
from restorekit.zoo import find, load_model  # noqa: E402

RUNS = REPO / "runs" / "mepsnet"
LEVELS = ("easy", "moderate", "difficult")
NO_WEIGHT_DECAY = "--set train.optimizer.weight_decay=0"  # Adam without weight decay (the baselines' reference code)
SIX_THOUSAND = "--set train.steps=6000"
THESIS_DEPTH = "--set model.args.srir=3 --set model.args.blocks=12"  # the thesis's expert depth at the CPU width


def _config(model: str) -> str:
    return f"configs/mepsnet/{model}_shdd_moderate_cpu.yaml"


ROWS = {  # row -> (run folder, config, --set overrides); Input: the distorted image itself
    "Input": (None, None, ""),
    "DnCNN": ("baseline_dncnn_he", _config("baseline_dncnn"), ""),
    "VDSR (deeper)": ("baseline_vdsr_he", _config("baseline_vdsr"), ""),
    "RIDNet": ("baseline_ridnet_he", _config("baseline_ridnet"), ""),
    "MEPSNet": ("moderate_cpu", _config("mepsnet"), ""),
    # the same recipes with Adam's weight decay 0: under the thesis's 1e-4 the plain stacks barely move (BENCHMARKS)
    "DnCNN (no weight decay)": ("baseline_dncnn_he_wd0", _config("baseline_dncnn"), NO_WEIGHT_DECAY),
    "VDSR (deeper; no weight decay)": ("baseline_vdsr_he_wd0", _config("baseline_vdsr"), NO_WEIGHT_DECAY),
    "RIDNet (no weight decay)": ("baseline_ridnet_he_wd0", _config("baseline_ridnet"), NO_WEIGHT_DECAY),
    "MEPSNet (no weight decay)": ("moderate_cpu_wd0", _config("mepsnet"), NO_WEIGHT_DECAY),
    # twice the budget (6,000 steps; the schedule's milestones stay at 300 / 750): does MEPSNet overtake RIDNet?
    "DnCNN (no weight decay; 6000 steps)": ("baseline_dncnn_he_wd0_steps6000", _config("baseline_dncnn"),
                                             f"{NO_WEIGHT_DECAY} {SIX_THOUSAND}"),
    "RIDNet (no weight decay; 6000 steps)": ("baseline_ridnet_he_wd0_steps6000", _config("baseline_ridnet"),
                                              f"{NO_WEIGHT_DECAY} {SIX_THOUSAND}"),
    "MEPSNet (6000 steps)": ("moderate_cpu_steps6000", _config("mepsnet"), SIX_THOUSAND),
    # the thesis's depth (3 SRIR x 12 blocks: 72 convolutions per expert from 16 templates) at the same parameter
    # count as the recipe's 2 x 4 (342,547 against 339,859): depth through sharing, ~3.4x the compute per step
    "MEPSNet (thesis depth 3x12)": ("moderate_cpu_deep", _config("mepsnet"), THESIS_DEPTH),
}
ZOO_ROWS = {  # row -> (zoo model, factor): what `restorekit restore --task auto` could run instead (issue 18 item 7)
    "R-MBN (zoo rmbn; every path)": ("rmbn", "auto"),
    "MEPSNet (zoo mepsnet_shdd)": ("mepsnet_shdd", None),
}
THESIS = {  # Table 7.1, PSNR / SSIM at easy, moderate, difficult (DIV2K, full models, 1.2M iterations; VDSR 4x deeper)
    "DnCNN": ((25.29, 0.7110), (25.54, 0.7354), (26.70, 0.7723)),
    "VDSR (deeper)": ((27.34, 0.7709), (25.73, 0.7701), (25.95, 0.7760)),
    "RIDNet": ((34.19, 0.9361), (32.94, 0.9317), (32.30, 0.9282)),
    "MEPSNet": ((34.23, 0.9369), (33.47, 0.9331), (32.71, 0.9284)),
}


def setup(level: str, factor: str | None = None) -> evaluation.EvalSetup:
    return evaluation.default_setup("restore", degrade=f"shdd:level={level}", seed_mode="name", factor=factor)


def row_weights(row: str) -> tuple[str, Path | None, str | None] | None:
    """(what load_model takes, the weights file to stamp the cache with, the factor) of a row; None: not trained."""
    if row in ZOO_ROWS:
        name, factor = ZOO_ROWS[row]
        return name, find(name).weights, factor
    run, _, _ = ROWS[row]
    if run is None:
        return "identity", None, None
    weights = RUNS / run / "final.safetensors"
    return (str(weights), weights, None) if weights.is_file() else None


def score(row: str, level: str, limit: int, out: Path) -> dict | None:
    found = row_weights(row)
    if found is None:
        return None
    model, weights, factor = found
    dataset = paths.resolve_dataset("BSD100")
    key = {"model": str(weights or model), "stamp": evaluation.file_stamp(weights) if weights else None}
    return evaluation.evaluate_cached(cache_file(out, row, level), key, lambda: load_model(model),
                                      dataset, setup(level, factor), limit)


def cache_file(out: Path, row: str, level: str) -> Path:
    """Where `score` keeps a row's per-image results at one level (scripts/auto_routing.py reads them)."""
    slug = re.sub(r"[^a-z0-9]+", "_", row.lower()).strip("_")
    return out / "cache" / f"{slug}_{level}.json"


def finite_mean(result: dict, metric: str) -> tuple[float, int]:
    """The mean over the images with a finite value, and how many were left out (undistorted inputs)."""
    values = [image[metric] for image in result["images"]]
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite), len(values) - len(finite)


def distorted_names(result: dict) -> set[str]:
    """The images whose SHDD version is distorted somewhere (the Input row's finite PSNRs)."""
    return {image["name"] for image in result["images"] if math.isfinite(image["psnr"])}


def mean_over(result: dict, metric: str, names: set[str]) -> float:
    values = [image[metric] for image in result["images"] if image["name"] in names]
    return sum(values) / len(values)


def table(results: dict, limit: int, inputs: dict[str, dict]) -> str:
    """Two views of each cell: every row scored on the distorted images only (the same images for every row, and
    the Input row defined), then on all images as the thesis averages (an undistorted image scores ~50 dB for a
    model that leaves it alone, which dominates a mean of 50). `inputs`: the Input row's result per level."""
    lines = [f"| Method | {' | '.join(f'{lv}: distorted / all images' for lv in LEVELS)} | thesis easy / moderate / difficult |",
             "|---|---|---|---|---|"]
    for row, by_level in results.items():
        cells = []
        for level in LEVELS:
            result = by_level.get(level)
            if result is None:
                cells.append("not trained")
                continue
            names = distorted_names(inputs[level])
            distorted = f"{mean_over(result, 'psnr', names):.2f} / {mean_over(result, 'ssim', names):.4f}"
            if row == "Input":
                cells.append(f"{distorted} ({len(result['images']) - len(names)} undistorted left out)")
                continue
            psnr, _ = finite_mean(result, "psnr")
            cells.append(f"{distorted}; all {psnr:.2f} / {finite_mean(result, 'ssim')[0]:.4f}")
        paper = " / ".join(f"{p:.2f}" for p, _ in THESIS[row]) if row in THESIS else "-"
        lines.append(f"| {row} | {' | '.join(cells)} | {paper} |")
    return "\n".join(lines) + f"\n\nBSD100 first {limit} images, one SHDD version per image and level (seeded by name)," \
        " RGB PSNR / SSIM, no border crop, outputs rounded to 8 bits.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", help="comma-separated rows (default: all)")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--out", default=str(RUNS / "tables"))
    parser.add_argument("--print-commands", action="store_true")
    args = parser.parse_args()
    if args.print_commands:
        for row, (run, config, overrides) in ROWS.items():
            if run:
                command = ["restorekit train", config, "--out", f"runs/mepsnet/{run}", overrides, "--resume"]
                print(f"# {row}\n" + " ".join(part for part in command if part))
        return
    out = Path(args.out)
    rows = args.rows.split(",") if args.rows else [*ROWS, *ZOO_ROWS]
    unknown = [row for row in rows if row not in ROWS and row not in ZOO_ROWS]
    if unknown:
        parser.error(f"unknown row(s) {unknown}; rows: {', '.join([*ROWS, *ZOO_ROWS])}")
    results = {}
    for row in rows:
        results[row] = {}
        for level in LEVELS:
            result = score(row, level, args.limit, out)
            if result is not None:
                results[row][level] = result
                print(f"{row} {level}: {finite_mean(result, 'psnr')[0]:.3f} dB", flush=True)
    inputs = {level: score("Input", level, args.limit, out) for level in LEVELS}  # cached: which images are distorted
    write_json(out / "shdd_results.json", {row: {lv: {k: r[k] for k in ("psnr", "ssim", "n_images", "protocol")}
                                                 for lv, r in by.items()} for row, by in results.items()})
    write_bytes(out / "shdd_table.md", table(results, args.limit, inputs).encode())
    print(table(results, args.limit, inputs))


if __name__ == "__main__":
    main()
