"""MBN's result tables (issue 17 acceptance): the runs of configs/mbn scored in-process through `restorekit eval`'s
code (restorekit.evaluation) in the layout of the paper's Tables 3 and 4, beside its numbers, plus Rain100H.

    .venv/bin/python scripts/mbn_tables.py                          # everything (slow on a CPU: see below)
    .venv/bin/python scripts/mbn_tables.py --only single --limit 4  # Table 3 pattern, 4 images per set
    .venv/bin/python scripts/mbn_tables.py --only rain100h --rows "R-MBN,Dedicated"   # one part, some rows
    .venv/bin/python scripts/mbn_tables.py --print-commands         # the training commands, nothing else

Rows (each a run of configs/mbn; a run not trained yet is a row saying so):
* Input: the degraded image itself.
* Dedicated: `runs/mbn/dedicated_<f>` on its own factor (single-factor sets and Rain100H only).
* Cascade (J->H->B->R): the four dedicated networks chained in R-MBN's order, clamped to [0, 1] between them.
* Universal: `runs/mbn/universal`, one plain path trained on every factor, never told which.
* MBN (factor given): the joint stage of `runs/mbn/mbn_rmbn_t91_cpu` running the set's factor's path.
* R-MBN: the final weights of that run, every path in turn (`--factor auto`), the factor unknown.
* R-MBN*: `runs/mbn/rmbn_star`, R-MBN fine-tuned on mixed factors, every path in turn.

Test sets: the factors synthesised on the first `--limit` images of `--dataset` (default CBSD68, not in the T91
training data), top-left `--crop` x `--crop` (default 192; the rain path alone costs ~20 s on a 481x321 image here),
each image degraded with MBN App. C's ranges as in training (levels drawn per image, seeded by its name), mixtures
in the synthesis order haze -> rain -> blur -> JPEG (Table 4's 15 combinations, and `mbn:factors=1..4` for its
"random combinations" row); Rain100H (`pairs/Rain100H`, real rain pairs, 36 clean sources from BSD200, none from
T91). Protocol as the paper's test script ([C], spec 3.8): PSNR / SSIM on the full-range (OpenCV) Y channel for
rain, motion blur and JPEG, on RGB for haze and (our choice: the paper does not say) for mixtures; outputs clamped
and rounded to 8 bits; no border crop. Images are padded to a multiple of 16 (the paper crops to it).

Each evaluation is cached under OUT/cache (restorekit.evaluation.evaluate_cached): a stopped run resumes, and
processes scoring different rows or parts fill one cache. Writes OUT/mbn_tables.md and OUT/mbn_results.json
(default OUT = runs/mbn/tables).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from restorekit import evaluation, paths  # noqa: E402
from restorekit.atomic import write_json  # noqa: E402
from restorekit.degrade.spec import MBN_STAGES  # noqa: E402
from restorekit.models import Model  # noqa: E402
from restorekit.models.mbn import RECURRENT_ORDER  # noqa: E402
from restorekit.zoo import find, load_model  # noqa: E402

RUNS = REPO / "runs" / "mbn"
SYNTHESIS_ORDER = ("haze", "rain", "blur", "jpeg")  # MBN App. C: always haze -> rain -> motion blur -> JPEG
FACTOR_SPECS = dict(zip(SYNTHESIS_ORDER, MBN_STAGES, strict=True))
LETTERS = {"rain": "R", "blur": "B", "haze": "H", "jpeg": "J"}
SINGLE_COLUMNS = ("blur", "haze", "rain", "jpeg")  # Table 3's column order
TASK_OF = {"rain": "derain", "blur": "deblur", "jpeg": "jpeg", "haze": "dehaze"}
MIXTURES = [  # Table 4's rows after the four single factors, in its order
    *(("rain", "blur"), ("rain", "haze"), ("rain", "jpeg"), ("blur", "haze"), ("blur", "jpeg"), ("haze", "jpeg")),
    *(("rain", "blur", "haze"), ("rain", "blur", "jpeg"), ("rain", "haze", "jpeg"), ("blur", "haze", "jpeg")),
    ("rain", "blur", "haze", "jpeg"),
]
RANDOM = "random"
MEPSNET = "MEPSNet (zoo mepsnet_shdd)"  # the other blind model `--task auto` could run (issue 18 item 7)
ROWS = ("Input", "Dedicated", "Cascade (J->H->B->R)", "Universal", "MBN (factor given)", "R-MBN", "R-MBN*", MEPSNET)
MIXED_ROWS = ("Input", "Universal", "R-MBN", "R-MBN*", MEPSNET)

# Spec 3.10, Table 3 (PSNR / SSIM): GoPro blur, SOTS haze, DID-MDN rain, LIVE1 JPEG q = 10.
PAPER_TABLE3 = {
    "Dedicated (best of four)": {"blur": (31.35, 0.9174), "haze": (32.16, 0.98), "rain": (33.21, 0.93), "jpeg": (29.63, 0.82)},
    "MBN": {"blur": (30.70, 0.9111), "haze": (32.68, 0.98), "rain": (33.40, 0.93), "jpeg": (28.24, 0.83)},
    "Cascade (J->H->B->R)": {"blur": (17.48, 0.7306), "haze": (27.03, 0.87), "rain": (21.52, 0.76), "jpeg": (16.97, 0.64)},
    "R-MBN": {"blur": (30.67, 0.9110), "haze": (32.38, 0.98), "rain": (33.40, 0.93), "jpeg": (28.19, 0.83)},
}
# Table 4 (PSNR / SSIM) on RESIDE-beta outdoor: R-MBN, R-MBN*, Suganuma et al.
PAPER_TABLE4 = {
    "R": ((38.63, 0.9797), (34.84, 0.9684), (30.50, 0.8660)), "B": ((33.66, 0.9525), (31.41, 0.9429), (27.55, 0.8411)),
    "H": ((30.07, 0.9710), (30.61, 0.9747), (25.73, 0.9019)), "J": ((31.72, 0.9154), (30.89, 0.9127), (28.99, 0.8584)),
    "R+B": ((28.59, 0.8454), (29.91, 0.9072), (26.13, 0.7853)), "R+H": ((28.42, 0.9441), (28.41, 0.9451), (24.12, 0.8139)),
    "R+J": ((25.66, 0.7515), (29.25, 0.8753), (27.18, 0.7828)), "B+H": ((26.58, 0.9163), (27.57, 0.9216), (23.27, 0.7776)),
    "B+J": ((26.90, 0.8012), (27.42, 0.8292), (26.04, 0.7714)), "H+J": ((24.89, 0.8548), (26.60, 0.8693), (24.42, 0.8075)),
    "R+B+H": ((22.57, 0.7894), (26.12, 0.8786), (22.38, 0.7195)), "R+B+J": ((23.64, 0.6912), (26.20, 0.7879), (24.91, 0.7214)),
    "R+H+J": ((21.15, 0.7045), (25.23, 0.8269), (22.04, 0.6732)), "B+H+J": ((21.29, 0.7154), (24.71, 0.7843), (22.59, 0.7117)),
    "R+B+H+J": ((18.84, 0.6249), (23.58, 0.7436), (22.04, 0.6733)), RANDOM: ((25.41, 0.7881), (27.37, 0.8502), (24.58, 0.7618)),
}


class Cascade(nn.Module):
    """Networks applied one after the other, clamped to [0, 1] between them (as R-MBN's steps)."""

    def __init__(self, networks: list[nn.Module]) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        for network in self.networks:
            image = network(image).clamp(0, 1)
        return image


def run_weights(runs: Path, run: str) -> Path:
    """A run folder's final weights, or a weights file named directly (e.g. weights/rmbn.safetensors, the zoo's)."""
    return Path(run) if run.endswith(".safetensors") else runs / run / "final.safetensors"


@dataclass(frozen=True)
class Runs:
    """Where the trained rows are: the runs folder, and which run (or weights file) is the R-MBN / R-MBN* row."""

    root: Path
    rmbn: str = "mbn_rmbn_t91_cpu"  # --rmbn-run: e.g. a longer step 2, or the zoo's weights/rmbn.safetensors
    rmbn_star: str = "rmbn_star"  # --rmbn-star-run: e.g. rmbn_star_from_rmbn

    def weights(self) -> dict[str, Path]:
        """Each trained row's weights file."""
        root = self.root
        return {"MBN (factor given)": root / "mbn_rmbn_t91_cpu" / "stages" / "joint.safetensors",
                "R-MBN": run_weights(root, self.rmbn),
                "R-MBN*": run_weights(root, self.rmbn_star),
                "Universal": root / "universal" / "final.safetensors",
                **{f"Dedicated {f}": root / f"dedicated_{f}" / "final.safetensors" for f in SYNTHESIS_ORDER}}


def cascade_model(runs: Runs) -> Model:
    members = [load_model(str(runs.weights()[f"Dedicated {f}"])) for f in RECURRENT_ORDER]
    info = replace(members[0].info, size_multiple=max(m.info.size_multiple for m in members))
    return Model(Cascade([m.module for m in members]).eval(), info, name="cascade J->H->B->R")


def row_source(label: str, factors: tuple[str, ...], runs: Runs) -> tuple[list[Path], str | None] | None:
    """(weights files, factor) of a row on a set with these factors; None where the row does not apply."""
    single = factors[0] if len(factors) == 1 else None
    files = runs.weights()
    if label == "Input":
        return [], None
    if label == "Dedicated":
        return ([files[f"Dedicated {single}"]], None) if single else None
    if label.startswith("Cascade"):
        return [files[f"Dedicated {f}"] for f in RECURRENT_ORDER], None
    if label == "MBN (factor given)":
        return ([files[label]], single) if single else None
    if label == MEPSNET:
        return [find("mepsnet_shdd").weights], None
    return [files[label]], "auto" if label.startswith("R-MBN") else None


def loader(label: str, files: list[Path], runs: Runs):
    if label == "Input":
        return lambda: load_model("identity")
    if label.startswith("Cascade"):
        return lambda: cascade_model(runs)
    return lambda: load_model(str(files[0]))


def set_setup(factors: tuple[str, ...], crop: int, factor: str | None) -> tuple[evaluation.EvalSetup, str]:
    """The set's spec and protocol: full-range Y for a single rain / blur / JPEG factor, RGB otherwise."""
    if factors == (RANDOM,):
        spec, task = "mbn:factors=1..4", "restore"
    else:
        spec = "+".join(FACTOR_SPECS[f] for f in SYNTHESIS_ORDER if f in factors)
        task = TASK_OF[factors[0]] if len(factors) == 1 else "restore"
    setup = evaluation.default_setup(task, degrade=spec, seed_mode="name", crop_to=(crop, crop), factor=factor)
    y = len(factors) == 1 and factors[0] in ("rain", "blur", "jpeg")
    protocol = replace(setup.protocol, y_channel=y, y_formula="opencv", crop_border=0)
    return replace(setup, protocol=protocol), spec


def eval_command(model: str, factors: tuple[str, ...], dataset: str, limit: int | None, crop: int,
                 factor: str | None) -> str:
    """The `restorekit eval` command line that gives one cell of the synthesised sets (for docs and cards)."""
    setup, spec = set_setup(factors, crop, factor)
    colour = "--y-channel --y-formula opencv" if setup.protocol.y_channel else "--rgb"
    return " ".join(part for part in (
        f"restorekit eval --model {model} --dataset {dataset} --task {setup.task} --degrade '{spec}'",
        f"--crop-to {crop}x{crop}", f"--limit {limit}" if limit else "", f"{colour} --crop-border 0",
        f"--factor {factor}" if factor else "") if part)


def set_name(factors: tuple[str, ...]) -> str:
    return "random combinations" if factors == (RANDOM,) else "+".join(LETTERS[f] for f in factors)


def score_row(label: str, factors: tuple[str, ...], runs: Runs, dataset: Path, setup_of, key: dict, cache: Path,
              limit: int | None):
    """One row on one set: [psnr, ssim], 'not trained', or None where the row does not apply. `setup_of(factor)`
    is the set's EvalSetup for the factor the row runs."""
    source = row_source(label, factors, runs)
    if source is None:
        return None
    files, factor = source
    if not all(f.is_file() for f in files):
        return "not trained"
    key = {"row": label, **key, "files": [[str(f), evaluation.file_stamp(f)] for f in files]}
    result = evaluation.evaluate_cached(cache, key, loader(label, files, runs), dataset, setup_of(factor), limit)
    print(f"{dataset.name}: {set_name(factors):22s} {label:22s} "
          f"{result['psnr']:.2f} / {result['ssim']:.4f} ({result['n_images']} images)", flush=True)
    return [result["psnr"], result["ssim"]]


def slug_of(*parts: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in "_".join(parts)).lower()


def score(factors: tuple[str, ...], rows: tuple[str, ...], runs: Runs, dataset: Path, limit: int | None, crop: int,
          cache: Path) -> dict:
    """{row: [psnr, ssim] or 'not trained' or None (does not apply)} on one synthesised set."""
    spec = set_setup(factors, crop, None)[1]
    return {label: score_row(label, factors, runs, dataset, lambda f: set_setup(factors, crop, f)[0], {"spec": spec},
                             cache / dataset.name / f"{slug_of(set_name(factors), label)}.json", limit)
            for label in rows}


def rain100h_setup(factor: str | None) -> evaluation.EvalSetup:
    """Real rain pairs, scored as the synthesised rain set: full-range Y, no border crop."""
    setup = evaluation.default_setup("derain", factor=factor)
    return replace(setup, protocol=replace(setup.protocol, y_channel=True, y_formula="opencv", crop_border=0))


def rain100h_command(model: str, limit: int | None, factor: str | None) -> str:
    """The `restorekit eval` command line of one Rain100H cell (rain100h_setup's protocol)."""
    return " ".join(part for part in (
        f"restorekit eval --model {model} --dataset Rain100H --task derain --y-channel --y-formula opencv "
        "--crop-border 0", f"--factor {factor}" if factor else "", f"--limit {limit}" if limit else "") if part)


def score_rain100h(rows: tuple[str, ...], runs: Runs, limit: int | None, cache: Path) -> dict:
    dataset = paths.resolve_dataset("Rain100H")
    # a rain set for the rows' sources: the dedicated rain network, MBN's rain path
    return {label: score_row(label, ("rain",), runs, dataset, rain100h_setup, {},
                             cache / "Rain100H" / f"{slug_of(label)}.json", limit) for label in rows}


def cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value[0]:.2f} / {value[1]:.4f}"


def gap(results: dict, a: str, b: str, column: str) -> float | None:
    x, y = results.get(a, {}).get(column), results.get(b, {}).get(column)
    return x[0] - y[0] if isinstance(x, list) and isinstance(y, list) else None


def single_table(results: dict, label: str) -> str:
    columns = [set_name((f,)) for f in SINGLE_COLUMNS]
    heads = {"B": "motion blur (B)", "H": "haze (H)", "R": "rain (R)", "J": "JPEG (J)"}
    lines = [f"### Single factor (Table 3 pattern), {label}", "",
             "| Method | " + " | ".join(heads[c] for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for row in ROWS:
        lines.append(f"| {row} | " + " | ".join(cell(results.get(row, {}).get(c)) for c in columns) + " |")
    checks = []
    for c in columns:
        parts = [(name, gap(results, a, b, c)) for name, a, b in (("MBN - dedicated", "MBN (factor given)", "Dedicated"),
                                                                  ("R-MBN - MBN", "R-MBN", "MBN (factor given)"),
                                                                  ("cascade - MBN", "Cascade (J->H->B->R)",
                                                                   "MBN (factor given)"))]
        checks.append(f"{c}: " + ", ".join(f"{n} {g:+.2f} dB" for n, g in parts if g is not None))
    lines += ["", "Gaps (PSNR; the paper: MBN within 0.5 dB of the dedicated networks, R-MBN within 0.3 dB of MBN, "
              "the cascade far below): " + "; ".join(checks) + ".", "",
              "Paper, Table 3 (GoPro / SOTS / DID-MDN / LIVE1 q = 10):", "",
              "| Method | motion blur | haze | rain | JPEG |", "|---|---|---|---|---|"]
    for row, values in PAPER_TABLE3.items():
        lines.append(f"| {row} | " + " | ".join(cell(values[c]) for c in SINGLE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def mixed_table(results: dict, label: str) -> str:
    chosen = MIXED_ROWS
    names = [set_name((f,)) for f in ("rain", "blur", "haze", "jpeg")] + [set_name(m) for m in MIXTURES] + [
        set_name((RANDOM,))]
    lines = [f"### Mixed factors (Table 4 pattern), {label}", "",
             "| Factors | " + " | ".join(chosen) + " | paper R-MBN | paper R-MBN* | paper Suganuma et al. |",
             "|---|" + "---|" * (len(chosen) + 3)]
    star_wins = universal_wins = total = 0
    for name in names:
        row = results.get(name, {})
        paper = PAPER_TABLE4[RANDOM if name == set_name((RANDOM,)) else name]
        lines.append(f"| {name} | " + " | ".join(cell(row.get(c)) for c in chosen) + " | "
                     + " | ".join(cell(p) for p in paper) + " |")
        star, plain, universal = (row.get(c) for c in ("R-MBN*", "R-MBN", "Universal"))
        if "+" in name and all(isinstance(v, list) for v in (star, plain, universal)):
            total += 1
            star_wins += star[0] > plain[0]
            universal_wins += plain[0] > universal[0]
    if total:
        lines += ["", f"On the {total} mixtures: R-MBN* above R-MBN on {star_wins}, R-MBN above the universal "
                  f"network on {universal_wins} (the paper's pattern: both on all)."]
    return "\n".join(lines) + "\n"


def train_commands() -> list[str]:
    names = ["mbn_rmbn_t91_cpu", *(f"dedicated_{f}_t91_cpu" for f in SYNTHESIS_ORDER), "universal_t91_cpu",
             "rmbn_star_t91_cpu"]
    outs = ["mbn_rmbn_t91_cpu", *(f"dedicated_{f}" for f in SYNTHESIS_ORDER), "universal", "rmbn_star"]
    return [f"restorekit train configs/mbn/{n}.yaml --out runs/mbn/{o} --resume" for n, o in zip(names, outs, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(RUNS), help="where the training runs are (default runs/mbn)")
    parser.add_argument("--out", default=None, help="where the tables go (default: RUNS/tables)")
    parser.add_argument("--only", choices=("single", "mixed", "rain100h"), action="append",
                        help="parts to score (repeatable; default all)")
    parser.add_argument("--dataset", default="CBSD68", help="clean test images for the synthesised sets")
    parser.add_argument("--limit", type=int, default=10, help="first N images of --dataset (default 10)")
    parser.add_argument("--crop", type=int, default=192, help="top-left crop side of the synthesised sets")
    parser.add_argument("--rain100h-limit", type=int, default=None, help="first N Rain100H pairs (default all 50)")
    parser.add_argument("--rows", default="", help=f"rows to score (default all): {', '.join(ROWS)}")
    parser.add_argument("--print-commands", action="store_true", help="print the training commands and stop")
    parser.add_argument("--rmbn-run", default=Runs.rmbn, help="the R-MBN row: a run folder under --runs (e.g. "
                        "rmbn_step2_long, configs/mbn/rmbn_step2_long_cpu.yaml) or a weights file (e.g. "
                        "weights/rmbn.safetensors, the zoo's); default %(default)s")
    parser.add_argument("--rmbn-star-run", default=Runs.rmbn_star, help="the R-MBN* row, as --rmbn-run (e.g. "
                        "rmbn_star_from_rmbn, configs/mbn/rmbn_star_from_rmbn_cpu.yaml); default %(default)s")
    args = parser.parse_args(argv)
    if args.print_commands:
        print("\n".join(train_commands()))
        return 0
    runs = Runs(Path(args.runs), args.rmbn_run, args.rmbn_star_run)
    out = Path(args.out) if args.out else runs.root / "tables"
    cache = out / "cache"
    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip()) or ROWS
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; rows: {', '.join(ROWS)}")
    parts = args.only or ["single", "mixed", "rain100h"]
    dataset = paths.resolve_dataset(args.dataset)
    label = f"{dataset.name}, first {args.limit} images, top-left {args.crop}x{args.crop}"
    results: dict = {}
    sections = []
    if "single" in parts:
        per_set = {set_name((f,)): score((f,), rows, runs, dataset, args.limit, args.crop, cache) for f in SINGLE_COLUMNS}
        results["single"] = {row: {s: per_set[s].get(row) for s in per_set} for row in rows}
        sections.append(single_table(results["single"], label))
    if "mixed" in parts:
        chosen = tuple(r for r in rows if r in MIXED_ROWS)
        sets = [(f,) for f in ("rain", "blur", "haze", "jpeg")] + MIXTURES + [(RANDOM,)]
        results["mixed"] = {set_name(s): score(s, chosen, runs, dataset, args.limit, args.crop, cache) for s in sets}
        sections.append(mixed_table(results["mixed"], label))
    if "rain100h" in parts:
        results["rain100h"] = score_rain100h(rows, runs, args.rain100h_limit, cache)
        n = args.rain100h_limit or "all 50"
        lines = [f"### Rain100H (real rain pairs, {n}; full-range Y)", "", "| Method | PSNR / SSIM |", "|---|---|"]
        lines += [f"| {row} | {cell(v)} |" for row, v in results["rain100h"].items()]
        sections.append("\n".join(lines) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "mbn_tables.md").write_text("## MBN results (scripts/mbn_tables.py)\n\n" + "\n".join(sections))
    write_json(out / "mbn_results.json", json.loads(json.dumps(results)))
    print(f"wrote {out / 'mbn_tables.md'} and {out / 'mbn_results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
