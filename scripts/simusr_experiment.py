"""SimUSR vs supervised vs ZSSR on BSD100 x4 (thesis ch. 5, Tables 5.1 and 5.4), at equal training budget.

    RESTOREKIT_DATA=../shared/data .venv/bin/python scripts/simusr_experiment.py            # everything
    .venv/bin/python scripts/simusr_experiment.py --print-commands                          # the commands only
    .venv/bin/python scripts/simusr_experiment.py --transductive                            # + SimUSR on BSD100's LR
    .venv/bin/python scripts/simusr_experiment.py --steps 20 --zssr-steps 20 --n 1 --train-limit 2 \
        --eval-limit 2 --out runs/simusr_smoke                                              # a smoke run

(a) the LR-only folder: BSD200 MATLAB-bicubic x4 (`restorekit degrade`), (b) SimUSR (configs/simusr/
carn_m_x4_bsd200_lr.yaml) and its supervised twin (carn_m_x4_bsd200_supervised.yaml) through `restorekit train
--resume`, (c) ZSSR (restorekit.train.zssr) on the first N BSD100 LR test inputs, (d) BSD100 x4 under
`restorekit eval --task sr --crop-to 480x320`'s protocol (Y channel, border 4; restorekit.evaluation): the
full set for the trained models, the N images for all of them plus bicubic, (e) OUT/simusr_table.md and
OUT/simusr_results.json, beside the thesis's numbers. Every step skips what is already there (a killed run
picks up where it stopped; training resumes from its last checkpoint). `--transductive` adds SimUSR trained on
BSD100's own LR test inputs (the LR images it is then tested on, never their HR).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from restorekit import evaluation, io, metrics, paths
from restorekit.atomic import write_json
from restorekit.cli import main as restorekit_main
from restorekit.infer import run_model
from restorekit.zoo import load_model

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "simusr"
SCALE = 4
TEST_SET = "BSD100"
# Thesis Table 5.1 (B100, x4, PSNR/SSIM on Y) and Table 5.4 (runtime on a TITAN X, 480x320 LR at x4).
THESIS_B100 = {"supervised": (27.58, 0.7349), "simusr": (27.49, 0.7324), "zssr": (27.12, 0.7211)}
THESIS_RUNTIME = {"zssr": 300.83, "simusr": 0.12}  # seconds per image; SimUSR CARN (1.14M params)
RUNS = {  # run name -> (config, LR-only training folder or None for the config's own)
    "simusr": ("carn_m_x4_bsd200_lr.yaml", "bsd200_lr_x4"),
    "supervised": ("carn_m_x4_bsd200_supervised.yaml", None),
    "simusr_transductive": ("carn_m_x4_bsd200_lr.yaml", "bsd100_lr_x4"),
}


def setup() -> evaluation.EvalSetup:
    """`restorekit eval --task sr --scale 4 --crop-to 480x320`: the protocol every number here uses."""
    return evaluation.default_setup("sr", scale=SCALE, crop_to=(480, 320))


def lr_folders(out: Path, transductive: bool) -> dict[str, list[str]]:
    """LR-only folder name -> the `restorekit degrade` arguments that make it."""
    folders = {"bsd200_lr_x4": ["degrade", "BSD200", "-o", str(out / "bsd200_lr_x4"), "--spec",
                                f"down:scale={SCALE}", "--modcrop", str(SCALE), "-q"]}
    if transductive:  # exactly the test inputs restorekit eval makes (crop, modcrop, MATLAB bicubic, uint8)
        folders["bsd100_lr_x4"] = ["degrade", TEST_SET, "-o", str(out / "bsd100_lr_x4"), "--spec",
                                   f"down:scale={SCALE}", "--modcrop", str(SCALE), "--crop-to", "480x320", "-q"]
    return folders


def make_lr_folders(out: Path, transductive: bool, dry: bool) -> None:
    for name, argv in lr_folders(out, transductive).items():
        if (out / name).is_dir() and any((out / name).glob("*.png")):
            continue
        print("restorekit " + shlex.join(argv))
        if not dry and restorekit_main(argv) != 0:
            sys.exit(f"could not make {out / name}")


def train_command(name: str, out: Path, args: argparse.Namespace) -> list[str]:
    """`restorekit train CONFIG --out DIR --resume` with this run's overrides."""
    config, folder = RUNS[name]
    sets = [f"name={name}", f"threads={args.threads}"]
    if folder is not None:
        sets.append(f"data.train.folder={out / folder}")
    if args.steps is not None:
        sets += [f"train.steps={args.steps}",
                 f"train.scheduler.milestones=[{int(args.steps * 0.6)}, {int(args.steps * 0.8)}]",
                 f"train.checkpoint_every={max(1, args.steps // 2)}"]
    if args.train_limit is not None:
        sets.append(f"data.train.limit={args.train_limit}")
    if args.moa:
        sets += ["augment.moa=true", "augment.p=0.2"]
    command = [sys.executable, "-m", "restorekit", "train", str(CONFIGS / config), "--out", str(out / name),
               "--resume", "--progress", "off"]
    for item in sets:
        command += ["--set", item]
    return command


def train_all(names: list[str], out: Path, args: argparse.Namespace) -> None:
    for name in names:
        command = train_command(name, out, args)
        print(shlex.join(command))
        if args.print_commands or (out / name / "final.safetensors").is_file():
            continue
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            sys.exit(f"training {name} failed (rerun this script to resume it)")


def test_images(limit: int | None) -> list[Path]:
    return io.list_images(paths.resolve_dataset(TEST_SET))[:limit]


def benchmark_pair(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR input, HR ground truth) of one BSD100 image, made as `restorekit eval` makes them."""
    protocol = setup()
    clean = evaluation.crop_to(io.read_image(path)[0], protocol.crop_to)
    return evaluation.sr_pair(clean, protocol)


def score(output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    protocol = setup().protocol
    return {"psnr": float(metrics.psnr_batch(output, target, protocol)),
            "ssim": float(metrics.ssim_batch(output, target, protocol))}


def run_zssr(out: Path, images: list[Path], steps: int, seed: int) -> list[dict]:
    """ZSSR on each image (skipping those with a record): its SR PNG, scores and runtime in OUT/zssr/."""
    from restorekit.train.zssr import zssr

    rows = []
    for path in images:
        record = out / "zssr" / f"{path.stem}.json"
        if record.is_file() and json.loads(record.read_text()).get("steps") == steps:
            rows.append(json.loads(record.read_text()))
            continue
        lr, hr = benchmark_pair(path)
        sr, stats = zssr(lr, SCALE, steps=steps, seed=seed)
        io.write_image(out / "zssr" / f"{path.stem}.png", sr, bit_depth=8, overwrite=True)
        row = {"name": path.name, **score(sr, hr), **stats.to_json()}
        write_json(record, row)
        print(f"zssr {path.name}: {row['psnr']:.2f} dB, {row['seconds']:.0f} s")
        rows.append(row)
    return rows


def evaluate_model(model_path: str, label: str, out: Path, limit: int | None) -> dict:
    """restorekit eval's numbers (cached in OUT/eval/LABEL.json; redone when the weights are newer)."""
    cached = out / "eval" / f"{label}.json"
    weights = Path(model_path)
    if cached.is_file() and (not weights.is_file() or cached.stat().st_mtime > weights.stat().st_mtime):
        result = json.loads(cached.read_text())
        if result["n_images"] == len(test_images(limit)):
            return result
    arguments = {"scale": SCALE} if not weights.is_file() else {}
    result = evaluation.evaluate(load_model(model_path, **arguments), paths.resolve_dataset(TEST_SET), setup(),
                                 limit=limit)
    write_json(cached, result)
    print(f"{label}: {TEST_SET} x{SCALE} {result['psnr']:.2f} dB over {result['n_images']} images")
    return result


def forward_seconds(model_path: str, image: Path, repeats: int = 3) -> float:
    """Median wall time of one forward pass on a BSD100 LR input (480x320 -> 120x80 LR): SimUSR's runtime."""
    model = load_model(model_path)
    lr, _ = benchmark_pair(image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run_model(model, lr, "cpu")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def table(results: dict, n: int) -> str:
    """The markdown report: full-set means, the N-image comparison with runtimes, the thesis beside."""
    lines = [f"# SimUSR vs supervised vs ZSSR, {TEST_SET} x{SCALE} (Y, border {SCALE}, crop 480x320)", "",
             f"Full set ({results['n_full']} images):", "",
             "| model | PSNR | SSIM | thesis B100 (DF2K, 6e5-step CARN) |", "|---|---:|---:|---|"]
    for label, full in results["full"].items():
        thesis = THESIS_B100.get(label.replace("_transductive", ""), None)
        lines.append(f"| {label} | {full['psnr']:.2f} | {full['ssim']:.4f} | "
                     + (f"{thesis[0]:.2f} / {thesis[1]:.4f}" if thesis and "transductive" not in label else "-") + " |")
    lines += ["", f"First {n} images (ZSSR is per image; runtime per image, this CPU, {results['threads']} thread(s)):",
              "", "| model | PSNR | SSIM | seconds per image | thesis runtime (TITAN X) |", "|---|---:|---:|---:|---:|"]
    for label, row in results["first_n"].items():
        thesis = THESIS_RUNTIME.get(label)
        lines.append(f"| {label} | {row['psnr']:.2f} | {row['ssim']:.4f} | "
                     + (f"{row['seconds']:.3g}" if row.get("seconds") is not None else "-") + " | "
                     + (f"{thesis:g}" if thesis else "-") + " |")
    lines += ["", "ZSSR seconds = training + inference on the image; trained models = one forward pass. "
              "Thesis: SimUSR CARN 27.49 vs supervised 27.58 vs ZSSR 27.12 dB on B100 (Table 5.1); "
              "ZSSR 300.83 s vs SimUSR CARN 0.12 s per image (Table 5.4).", ""]
    return "\n".join(lines)


def report(out: Path, names: list[str], zssr_rows: list[dict], args: argparse.Namespace) -> None:
    images = test_images(args.n)
    full = {name: evaluate_model(str(out / name / "final.safetensors"), name, out, args.eval_limit) for name in names}
    bicubic = evaluate_model("bicubic", "bicubic", out, args.n)
    first_n = {"bicubic": {"psnr": bicubic["psnr"], "ssim": bicubic["ssim"], "seconds": None}}
    for name, result in full.items():
        rows = [r for r in result["images"] if r["name"] in {p.name for p in images}]
        first_n[name] = {"psnr": mean(rows, "psnr"), "ssim": mean(rows, "ssim"),
                         "seconds": forward_seconds(str(out / name / "final.safetensors"), images[0])}
    first_n["zssr"] = {"psnr": mean(zssr_rows, "psnr"), "ssim": mean(zssr_rows, "ssim"),
                       "seconds": mean(zssr_rows, "seconds"), "steps": args.zssr_steps}
    results = {"dataset": TEST_SET, "scale": SCALE, "protocol": setup().describe(),
               "n_full": next(iter(full.values()))["n_images"], "n": len(images), "threads": torch.get_num_threads(),
               "full": {k: {"psnr": v["psnr"], "ssim": v["ssim"], "n_images": v["n_images"]} for k, v in full.items()},
               "first_n": first_n, "zssr_images": zssr_rows,
               "thesis": {"table_5_1_b100": THESIS_B100, "table_5_4_seconds": THESIS_RUNTIME},
               "train_commands": {n: shlex.join(train_command(n, out, args)) for n in names}}
    write_json(out / "simusr_results.json", results)
    (out / "simusr_table.md").write_text(table(results, len(images)))
    print((out / "simusr_table.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "simusr", help="everything goes here (git-ignored)")
    parser.add_argument("--n", type=int, default=4, help="BSD100 images for ZSSR and the per-image table (default 4)")
    parser.add_argument("--steps", type=int, help="training steps of both configs (default: theirs, 1,000)")
    parser.add_argument("--zssr-steps", type=int, default=1000, help="ZSSR steps per image (default 1,000)")
    parser.add_argument("--seed", type=int, default=0, help="ZSSR seed")
    parser.add_argument("--train-limit", type=int, help="train on the first N images only (smoke runs)")
    parser.add_argument("--eval-limit", type=int, help="evaluate on the first N BSD100 images only (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads here and in training (default 1)")
    parser.add_argument("--moa", action="store_true", help="train both with MoA on (p 0.2), as the thesis")
    parser.add_argument("--transductive", action="store_true", help="also SimUSR on BSD100's own LR test inputs")
    parser.add_argument("--print-commands", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if paths.data_root() is None:
        sys.exit("benchmark data not found: set RESTOREKIT_DATA to the shared data folder")
    out = args.out.resolve()
    names = ["simusr", "supervised", *(["simusr_transductive"] if args.transductive else [])]
    make_lr_folders(out, args.transductive, args.print_commands)
    train_all(names, out, args)
    if args.print_commands:
        return
    zssr_rows = run_zssr(out, test_images(args.n), args.zssr_steps, args.seed)
    report(out, names, zssr_rows, args)


if __name__ == "__main__":
    main()
