"""RED-Net's down-sampling speed variants on CPU (issue 16; paper Sec. 4.5; a benchmark, not a test): RED30 with
stride 2 at conv1, conv5, conv9 or conv5+conv9 (mirrored stride-2 deconvs) against RED30 without, on one grey
image (default 480x320), every variant timed once per round in rotating order and the ratio to the plain RED30
taken per round (bench/sr_speed.py's method), so load from other processes hits all alike.

The paper (i7-2600, 160x240): 3.17 s plain; conv1 0.84 s (3.8x), conv5 1.43 s, conv9 2.00 s, conv5+9 1.17 s.
Speed does not depend on the weights (random here); the PSNR side of the trade-off is the `down` study of
scripts/rednet_ablation.py (trained at equal steps).

    .venv/bin/python bench/rednet_speed.py --threads 1 --json outputs/rednet_speed.json
    .venv/bin/python bench/rednet_speed.py --rounds 1 --size 128x96      # quick look (the stride-2 variants need >= 75 px)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sr_speed import Subject, cpu_model, per_round_ratio, run_bench, run_rounds

from restorekit import models
from restorekit.profile import parse_output_size

VARIANTS = {"plain": (), "conv1": (1,), "conv5": (5,), "conv9": (9,), "conv5+conv9": (5, 9)}
PAPER_SECONDS = {"plain": 3.17, "conv1": 0.84, "conv5": 1.43, "conv9": 2.00, "conv5+conv9": 1.17}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="480x320", help="grey input WIDTHxHEIGHT (default 480x320)")
    p.add_argument("--depth", type=int, default=30, help="conv + deconv layers (default 30: RED30)")
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None, help="write the result here")
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = parse_output_size(args.size)
    image = torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(0))
    subjects = {}
    for name, down in VARIANTS.items():
        torch.manual_seed(0)
        net = models.build("rednet", depth=args.depth, features=args.features, down=down).module.eval()
        subjects[name] = Subject(name, lambda n=net: n(image), 0)
    with torch.inference_mode():
        for subject in subjects.values():  # warm-up
            subject.run()
        run_rounds(list(subjects.values()), args.rounds)
    rows = []
    for name, subject in subjects.items():
        median, low, high = per_round_ratio(subjects["plain"], subject, "cpu")  # plain / variant = speed-up
        rows.append({"variant": name, "down": list(VARIANTS[name]), "wall_ms": 1e3 * subject.seconds("wall"),
                     "cpu_ms": 1e3 * subject.seconds("cpu"), "speedup_median": median, "speedup_min": low,
                     "speedup_max": high, "paper_s": PAPER_SECONDS[name],
                     "paper_speedup": PAPER_SECONDS["plain"] / PAPER_SECONDS[name]})
    return {"size": f"{width}x{height}", "depth": args.depth, "features": args.features, "rounds": args.rounds,
            "threads": torch.get_num_threads(), "cpu": cpu_model(), "rows": rows,
            "paper": "Sec. 4.5, i7-2600, 160x240, network depth not stated"}


def print_report(result: dict) -> None:
    print(f"RED{result['depth']} (width {result['features']}) down-sampling variants, grey {result['size']}, "
          f"{result['threads']} thread(s), {result['cpu']}")
    print(f"{'variant':<12} {'wall ms':>9} {'cpu ms':>9} {'speed-up (cpu, per round)':>28} {'paper':>7}")
    for row in result["rows"]:
        spread = f"{row['speedup_median']:.2f}x [{row['speedup_min']:.2f}, {row['speedup_max']:.2f}]"
        print(f"{row['variant']:<12} {row['wall_ms']:>9.0f} {row['cpu_ms']:>9.0f} {spread:>28} "
              f"{row['paper_speedup']:>6.2f}x")


def main(argv: list[str] | None = None) -> int:
    return run_bench(argv, parse_args, measure, print_report)


if __name__ == "__main__":
    sys.exit(main())
