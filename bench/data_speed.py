"""How fast the training data path feeds 48x48 patches (target: >= 1,000 patches/s with 2 workers).

Measures the real loader the trainer uses (decoded-image cache, step plan, per-sample crop, flip/rotation
and on-the-fly degradation in the workers) on Train400 when the shared data is present, else on
scikit-image's bundled photographs, and prints a markdown table for docs/BENCHMARKS.md.

    .venv/bin/python bench/data_speed.py [--batches 150] [--batch-size 64] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch.utils.data import DataLoader

from restorekit import paths
from restorekit.data.datasets import Level, PatchDataset
from restorekit.data.samplers import StepBatchSampler, StepPlan, build_strategy
from restorekit.data.sources import load_folder, load_skimage
from restorekit.degrade import parse_spec

SPECS = ("noise:sigma=0..75", "blur:width=0.5..3+noise:sigma=5", "jpeg:quality=10..40")


def images():
    root = paths.data_root()
    if root is not None and (root / "train" / "Train400").is_dir():
        return load_folder(root / "train" / "Train400", channels=1), "Train400 (400 grey 180x180)"
    names = ["astronaut", "camera", "coffee", "chelsea", "coins", "moon"]
    return load_skimage(names, channels=1), "scikit-image samples (6, grey)"


def measure(source, spec: str, workers: int, batches: int, batch_size: int) -> float:
    pipe = parse_spec(spec)
    dataset = PatchDataset([source], [Level(spec, spec, 0, 48, pipe)])
    plan = StepPlan(build_strategy("rigid_joint", 1), [0], [len(source)], batch_size, seed=0)
    warmup = 10
    loader = DataLoader(dataset, batch_sampler=StepBatchSampler(plan, 0, warmup + batches), num_workers=workers,
                        prefetch_factor=4 if workers else None)
    it = iter(loader)
    for _ in range(warmup):  # worker start-up is paid once per run, not per patch
        next(it)
    started = time.perf_counter()
    count = 0
    for batch in it:
        count += batch["lq"].shape[0]
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    source, label = images()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"Data loading, 48x48 patches, batch {args.batch_size}, {label}; {platform.processor() or platform.machine()}, "
          f"{cores} cores, torch {torch.__version__}\n")
    print("| degradation (on the fly, per patch) | " + " | ".join(f"{w} workers" for w in args.workers) + " |")
    print("|---|" + "---:|" * len(args.workers))
    for spec in SPECS:
        rates = [measure(source, spec, w, args.batches, args.batch_size) for w in args.workers]
        print(f"| `{spec}` | " + " | ".join(f"{r:,.0f} patches/s" for r in rates) + " |")


if __name__ == "__main__":
    main()
