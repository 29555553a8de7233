"""Colour denoising against the classical baseline (issue 19 item 4; a benchmark, not a test): the zoo AdaFM
denoiser and CBM3D (the `bm3d` package's `bm3d_rgb`, PyPI) on the same noisy images, side by side in one run.

For each of the first N CBSD68 images and each sigma, ONE noisy input is made with our evaluation protocol
(`evaluation.make_input`: float Gaussian noise, not clipped, seeded per image as `restorekit eval` does) and
given to both methods; each output is clamped, rounded to 8 bits and scored with the denoising protocol (RGB PSNR,
no border crop). CBM3D is told the true sigma; the AdaFM model runs at lambda(sigma) from its card. Wall and
process CPU time per image are recorded for each (the model with `--threads` torch threads; bm3d's compiled
core runs single-threaded), and the ratio of the mean times.

The `bm3d` package is optional (its licence allows non-commercial use only; `pip install bm3d` or
`pip install 'restorekit[simusr]'`) and `make bench` does not install it: without it, or without the benchmark
images (`RESTOREKIT_DATA`, default ../shared/data), this benchmark says why in one line and is skipped (exit 0,
like the n/a columns of the other benchmarks).

    .venv/bin/python bench/denoise_vs_bm3d.py --json outputs/bench/denoise_vs_bm3d.json     # 20 images, sigma 25, 50
    .venv/bin/python bench/denoise_vs_bm3d.py --limit 2 --sigmas 50                          # quick look
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from restorekit import evaluation, io, metrics, paths
from restorekit.atomic import write_json
from restorekit.errors import RestorekitError
from restorekit.infer import conditions_for, run_model
from restorekit.train.simusr import bm3d_denoise
from restorekit.zoo import load_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="adafm_denoise_s15_s75", help="zoo model or weights file (default: the zoo "
                   "AdaFM denoiser)")
    p.add_argument("--dataset", default="CBSD68")
    p.add_argument("--limit", type=int, default=20, help="first N images (default 20)")
    p.add_argument("--sigmas", default="25,50", help="noise levels, 0-255 scale (default 25,50)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the model (default 1, as bm3d)")
    p.add_argument("--json", help="write the per-image and mean results here")
    return p.parse_args(argv)


def timed(run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float, float]:
    """(output, wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    output = run()
    return output, time.perf_counter() - wall, time.process_time() - cpu


def compare(model, items: list, sigma: float) -> dict:
    """Both methods on the same noisy images at one sigma: per-image PSNR and times, then the means."""
    setup = evaluation.default_setup("denoise", level=sigma)
    conditions = conditions_for(model, level=sigma)
    methods = {
        "model": lambda noisy: run_model(model, noisy, "cpu", **conditions),
        "cbm3d": lambda noisy: bm3d_denoise(noisy, sigma),
    }
    rows = []
    for name, clean_path, _ in items:
        noisy, clean = evaluation.make_input(io.read_image(clean_path)[0], name, setup)
        row = {"name": name}
        for method, run in methods.items():
            output, wall, cpu = timed(lambda run=run, noisy=noisy: run(noisy))
            row[method] = {"psnr": float(metrics.psnr_batch(output.clamp(0, 1), clean, setup.protocol)),
                           "seconds": wall, "cpu_seconds": cpu}
        rows.append(row)
        print(f"sigma {sigma:g} {name}: " + ", ".join(
            f"{m} {row[m]['psnr']:.2f} dB {row[m]['seconds']:.2f} s" for m in methods), flush=True)
    means = {m: {k: statistics.fmean(r[m][k] for r in rows) for k in ("psnr", "seconds", "cpu_seconds")}
             for m in methods}
    return {"sigma": sigma, "strength": conditions.get("strength"), "means": means,
            "time_ratio_cbm3d_over_model": means["cbm3d"]["seconds"] / means["model"]["seconds"],
            "psnr_gap_model_minus_cbm3d": means["model"]["psnr"] - means["cbm3d"]["psnr"],
            "protocol": setup.describe(), "images": rows}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import bm3d  # noqa: F401
    except ImportError:
        print("bench/denoise_vs_bm3d.py: skipped, the optional package 'bm3d' is not installed (pip install bm3d; "
              "non-commercial licence)")
        return
    torch.set_num_threads(args.threads)
    try:
        items = evaluation.dataset_items(paths.resolve_dataset(args.dataset))[:args.limit]
    except RestorekitError as error:
        print(f"bench/denoise_vs_bm3d.py: skipped, no benchmark images: {error}")
        return
    try:
        model = load_model(args.model)
    except RestorekitError as error:
        sys.exit(f"bench/denoise_vs_bm3d.py: {error}")
    results = [compare(model, items, float(s)) for s in args.sigmas.split(",")]
    print(f"\n| sigma | {args.model} PSNR | CBM3D PSNR | gap | {args.model} s/image | CBM3D s/image | time ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        m, b = r["means"]["model"], r["means"]["cbm3d"]
        print(f"| {r['sigma']:g} | {m['psnr']:.2f} | {b['psnr']:.2f} | {r['psnr_gap_model_minus_cbm3d']:+.2f} | "
              f"{m['seconds']:.2f} | {b['seconds']:.2f} | {r['time_ratio_cbm3d_over_model']:.0f}x |")
    print(f"\n{args.dataset}, first {len(items)} images; torch {torch.__version__}, {args.threads} thread(s), "
          f"{platform.machine()}")
    if args.json:
        write_json(Path(args.json), {"model": args.model, "dataset": args.dataset, "n_images": len(items),
                                     "threads": args.threads, "torch": torch.__version__,
                                     "machine": platform.machine(), "results": results})


if __name__ == "__main__":
    main()
