"""Why the sparse-kernel path holds OpenBLAS to one thread: trajectory blur with and without the limit.

`restorekit.degrade.linear._correlate_taps_axpy` calls SciPy's BLAS `axpy` once per kernel tap and
wraps the loop in a threadpoolctl limit of one OpenBLAS thread. OpenBLAS splits any axpy of over
10,000 elements across every core, and its worker threads spin between calls; next to torch's own
threads, or in several DataLoader worker processes, they oversubscribe the cores. This benchmark runs
the training-path trajectory blur (batch of 64 natural 96x96 RGB patches) with the limit (the code as
shipped) and without it (the limit replaced by a no-op), in rounds that alternate, in two settings:

* one process with torch on all cores (as bench/degrade_speed.py runs);
* as many processes as cores, each with one torch thread, started together (a DataLoader's workers).

    .venv/bin/python bench/blas_threads.py
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from degrade_speed import BATCH, natural_patches

from restorekit.degrade import linear, parse_spec

SPEC = "blur:kind=trajectory,length=5..25"


def rates(threads: int, repeats: int, seconds: float) -> dict[str, list[float]]:
    """Patches/s per round, limited and unlimited taking turns, in this process with `threads` torch threads."""
    torch.set_num_threads(threads)
    batch = natural_patches(BATCH)
    generator = torch.Generator().manual_seed(0)
    pipe = parse_spec(SPEC)
    pipe(batch, generator)  # warm-up: loads SciPy's BLAS and makes the limit
    axpy, limit = linear._blas_axpy(torch.float32)
    shipped = linear._blas_axpy

    def round_rate() -> float:
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            pipe(batch, generator)
            calls += 1
        return calls * BATCH / (time.perf_counter() - start)

    out: dict[str, list[float]] = {"limited to 1 thread (shipped)": [], "no limit": []}
    try:
        for _ in range(repeats):
            linear._blas_axpy = shipped
            out["limited to 1 thread (shipped)"].append(round_rate())
            linear._blas_axpy = lambda dtype: (axpy, contextlib.nullcontext)
            out["no limit"].append(round_rate())
    finally:
        linear._blas_axpy = shipped
    return out


def _worker(args: tuple[int, int, float]) -> dict[str, list[float]]:
    return rates(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one round")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
    print(f"torch {torch.__version__}, {cores} cores, `{SPEC}`, batch {BATCH} x 3 x 96 x 96, load average at start {load}\n")
    print("| setting | OpenBLAS | patches/s per process, median of rounds | rounds |")
    print("|---|---|---:|---|")
    settings = [(f"1 process, {cores} torch threads", [(cores, args.repeats, args.seconds)])]
    settings.append((f"{cores} processes, 1 torch thread each", [(1, args.repeats, args.seconds)] * cores))
    for label, jobs in settings:
        if len(jobs) == 1:
            results = [rates(*jobs[0])]
        else:
            with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
                results = pool.map(_worker, jobs)
        for mode in results[0]:
            per_process = [statistics.median(r[mode]) for r in results]
            rounds = "; ".join(", ".join(f"{x:,.0f}" for x in r[mode]) for r in results)
            print(f"| {label} | {mode} | {' / '.join(f'{x:,.0f}' for x in per_process)} | {rounds} |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
