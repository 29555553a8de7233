"""`restorekit train CONFIG [--set key=value ...] --out DIR [--resume]`: train from a YAML config.

Under torchrun (`python -m torch.distributed.run --nproc_per_node=N -m restorekit train CONFIG ...`) every
process runs this command; the configured batch is the global batch, split across processes. When
`torchrun --max-restarts` restarts the workers it re-executes this same command line, so a restart implies
`--resume` (see docs/training.md, "Elastic restarts").
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a YAML config (resumable; torchrun for several processes)",
        description="Train a model from a YAML config (see docs/training.md for every key). Writes OUT/log.jsonl, "
        "OUT/checkpoints/, OUT/config.yaml (the resolved config), OUT/final.safetensors + OUT/final.json (the model "
        "card) and, for `recipe: staged`, OUT/stages/NAME.safetensors per stage.",
    )
    p.add_argument("config", help="YAML config file, e.g. configs/tiny/denoise.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=100 --set seed=3 --set stages.1.steps=400 "
                   "(repeatable)")
    p.add_argument("--out", help="output folder (default outputs/train/<config name>)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                   help="continue from the newest good checkpoint in --out (corrupt ones are skipped with a "
                   "warning; none: start at step 0), or from CHECKPOINT; implied when torchrun restarts the workers")
    p.add_argument("--device", help="override the config's device (cpu, cuda, auto)")
    p.add_argument("--progress", choices=["auto", "on", "off"], help="progress bar (default: the config's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from restorekit.train import load_config
    from restorekit.train import run as run_training

    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else Path("outputs") / "train" / Path(args.config).stem
    summary = run_training(cfg, out, resume=args.resume, progress=args.progress)
    if summary["rank"] != 0:  # under torchrun only rank 0 reports
        return 0
    if summary.get("val_psnr"):
        psnr = ", ".join(f"{k} {v:.2f} dB" for k, v in summary["val_psnr"].items())
        print(f"restorekit: trained {summary['steps']} steps -> {out / 'final.safetensors'} (validation PSNR: {psnr})")
    else:
        print(f"restorekit: trained {summary['steps']} steps -> {out / 'final.safetensors'}")
    return 0
