"""`restorekit demo`: the main job on embedded default images (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from restorekit.cli.common import results_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="degrade the bundled sample images at several levels and restore them")
    p.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from restorekit.demo import run_demo, summary

    out = Path(args.out)
    report = run_demo(out)
    rows = [[c, m, p, s, proto] for c, m, p, s, proto in summary(report["results"])]
    console = Console()
    console.print(results_table("restorekit demo (mean over samples)", ["case", "model", "PSNR", "SSIM", "protocol"], rows))
    console.print(f"report: {out / 'report.html'}  (also report.md, results.json)")
    return 0
