"""Level estimation measured (issue 18 item 3; docs/BENCHMARKS.md "Level estimation"): how well `restore
--level auto` finds the level, and what the estimate costs the zoo's modulated models against the true level.

    .venv/bin/python scripts/level_estimation.py                      # all three parts (~15 min on 2 cores)
    .venv/bin/python scripts/level_estimation.py --only noise --limit 10
    .venv/bin/python scripts/level_estimation.py --only blur-fit --limit 30 --out runs/level_estimation_blurfit
    .venv/bin/python scripts/level_estimation.py --only blur --limit 20 --out runs/level_estimation_blur
    .venv/bin/python scripts/level_estimation.py --only blur-auto --blur-datasets Set14 --widths 1,2,3 \
        --out runs/level_estimation_blur_auto

Parts:
* noise: restorekit.estimate.noise_sigma on `--noise-dataset` (default CBSD68) at each `--sigmas` level, the noisy
  images as files hold them (`noise:sigma=S,quantize=true`: clipped to [0, 255] and rounded, seeded per image
  name as `restorekit eval --seed-mode name` does), with and without the clipping correction.
* jpeg: restorekit.estimate.jpeg_quality on `--jpeg-dataset` (default LIVE1) saved by Pillow at each quality, and
  restorekit.estimate.jpeg_quality_from_pixels on the same files decoded (what a PNG of them holds).
* auto: the zoo model `--model` (default the zoo's denoiser with a level range) on the noisy files at
  `--auto-sigmas`, once at the true sigma and once at each image's estimate clamped to the model's range
  (what `restore --level auto` does): mean RGB PSNR, no border crop, outputs clamped and rounded to 8 bits.
* blur-fit (not in the default parts): restorekit.estimate.edge_width on `--blur-fit-datasets` (training images)
  blurred at each `--widths` u and downscaled at each `--scales` (1: blurred only), and the line
  w^2 = w0^2 + (k u)^2 through the mean squared widths: the (w0, k) pasted into estimate.BLUR_CALIBRATION.
* blur: restorekit.estimate.blur_width on `--blur-datasets` (test images) at each u and scale.
* blur-auto: `--blur-model` (default the zoo's DL-Net x2) on `--blur-datasets` at each u, at the true u and at
  each image's estimate clamped to its range: Y PSNR (MATLAB), border crop = scale, 8-bit outputs.

Writes OUT/level_estimation.json and OUT/level_estimation.md (default OUT = runs/level_estimation).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from restorekit import estimate, evaluation, metrics, ops, paths  # noqa: E402
from restorekit.api import build_restorer, choose_model  # noqa: E402
from restorekit.atomic import write_bytes, write_json  # noqa: E402
from restorekit.degrade.spec import canonical_spec, parse_spec  # noqa: E402
from restorekit.io import list_images, read_image  # noqa: E402

NOISE_SPEC = "noise:sigma={sigma:g},quantize=true"


def noisy_images(dataset: Path, sigma: float, limit: int | None):
    """(name, noisy, clean) for the first `limit` images, each image's noise seeded by its name."""
    setup = evaluation.default_setup("denoise", level=sigma, degrade=NOISE_SPEC.format(sigma=sigma),
                                     seed_mode="name")
    for path in list_images(dataset)[:limit]:
        clean, _ = read_image(path)
        noisy, target = evaluation.make_input(clean, path.name, setup)
        yield path.name, noisy, target


def noise_part(dataset: Path, sigmas: list[float], limit: int | None) -> list[dict]:
    rows = []
    for sigma in sigmas:
        raw, corrected = [], []
        for _, noisy, _ in noisy_images(dataset, sigma, limit):
            raw.append(estimate.noise_sigma(noisy, clipped=False))
            corrected.append(estimate.noise_sigma(noisy))
        rows.append({"sigma": sigma, "n": len(raw), **_errors("raw", raw, sigma), **_errors("corrected", corrected, sigma)})
        print(f"noise sigma {sigma:g}: corrected mean {np.mean(corrected):.2f} (raw {np.mean(raw):.2f})", flush=True)
    return rows


def _errors(prefix: str, values: list[float], truth: float) -> dict:
    errors = np.asarray(values) - truth
    return {f"{prefix}_mean": float(np.mean(values)), f"{prefix}_bias": float(errors.mean()),
            f"{prefix}_mae": float(np.abs(errors).mean()), f"{prefix}_max_abs": float(np.abs(errors).max())}


def jpeg_part(dataset: Path, qualities: list[int], limit: int | None, scratch: Path) -> list[dict]:
    rows = []
    scratch.mkdir(parents=True, exist_ok=True)
    for quality in qualities:
        found, pixels = [], []
        for path in list_images(dataset)[:limit]:
            with Image.open(path) as image:
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="JPEG", quality=quality)
            file = scratch / "estimate.jpg"
            file.write_bytes(buffer.getvalue())
            found.append(estimate.jpeg_quality(file).level)
            pixels.append(estimate.jpeg_quality_from_pixels(read_image(file)[0]).level)
        exact = sum(f == quality for f in found)
        rows.append({"quality": quality, "n": len(found), "exact": exact, **_errors("estimate", found, quality),
                     "pixels_exact": sum(f == quality for f in pixels),
                     "pixels_within_1": sum(abs(f - quality) <= 1 for f in pixels), **_errors("pixels", pixels, quality)})
        print(f"jpeg q{quality}: {exact}/{len(found)} exact from the file, {rows[-1]['pixels_exact']} from the pixels",
              flush=True)
    return rows


def true_vs_estimate(restorer, task: str, pairs, true_level: float, estimate_level, protocol, **restore_args
                     ) -> dict:
    """PSNR of `restorer` at the true level and at the estimate (clamped to the model's range) over
    (degraded, target) pairs: the cost of `--level auto`."""
    low, high = restorer.card.level_range()
    true_psnr, auto_psnr, levels = [], [], []
    for degraded, target in pairs:
        level = min(max(estimate_level(degraded), low), high)
        levels.append(level)
        for at, scores in ((true_level, true_psnr), (level, auto_psnr)):
            out = restorer.restore(degraded, task=task, level=at, **restore_args)
            scores.append(float(metrics.psnr_batch(out.clamp(0, 1), target, protocol)[0]))
    return {"n": len(levels), "psnr_true_level": float(np.mean(true_psnr)), "psnr_auto_level": float(np.mean(auto_psnr)),
            "mean_level": float(np.mean(levels)), "gap_db": float(np.mean(true_psnr) - np.mean(auto_psnr))}


def auto_part(dataset: Path, model_name: str | None, sigmas: list[float], limit: int | None) -> dict:
    choice = choose_model(model_name, "denoise", None, None)
    restorer = build_restorer(choice, task="denoise")
    protocol = evaluation.default_setup("denoise").protocol
    rows = []
    for sigma in sigmas:
        pairs = ((noisy, target) for _, noisy, target in noisy_images(dataset, sigma, limit))
        rows.append({"sigma": sigma, **true_vs_estimate(restorer, "denoise", pairs, sigma, estimate.noise_sigma,
                                                        protocol)})
        print(f"auto sigma {sigma:g}: true {rows[-1]['psnr_true_level']:.3f} auto {rows[-1]['psnr_auto_level']:.3f}",
              flush=True)
    return {"model": choice.name, "range": list(restorer.card.level_range()), "rows": rows}


def blurred(clean: torch.Tensor, width: float, scale: int) -> torch.Tensor:
    """The task's canonical input at blur width `width`: blurred then x`scale` bicubic (sr), or blurred only
    (scale 1: deblur), rounded to 8 bits as a file holds it."""
    if scale == 1 and not width:
        return clean
    spec = canonical_spec("sr", level=width, scale=scale) if scale > 1 else canonical_spec("deblur", level=width)
    out, _ = parse_spec(spec).apply_one(ops.modcrop(clean, scale), 0)
    return ops.quantize(out.clamp(0, 1))


def blur_images(datasets: list[str], limit: int | None):
    for name in datasets:
        for path in list_images(paths.resolve_dataset(name))[:limit]:
            yield path.name, read_image(path)[0]


def blur_fit_part(datasets: list[str], widths: list[float], scales: list[int], limit: int | None) -> dict:
    """estimate.BLUR_CALIBRATION fitted: mean squared edge width against u^2 is a line, w^2 = w0^2 + k^2 u^2."""
    images = list(blur_images(datasets, limit))
    fitted = {}
    for scale in scales:
        squares = [np.mean([estimate.edge_width(blurred(clean, u, scale)) ** 2 for _, clean in images]) for u in widths]
        slope, intercept = np.polyfit(np.square(widths), squares, 1)
        fitted[scale] = (round(float(np.sqrt(intercept)), 4), round(float(np.sqrt(slope)), 4))
        print(f"blur fit x{scale}: w0 {fitted[scale][0]} k {fitted[scale][1]} (mean w^2 {np.round(squares, 3)})",
              flush=True)
    return {"datasets": datasets, "n": len(images), "widths": widths, "calibration": fitted}


def blur_part(datasets: list[str], widths: list[float], scales: list[int], limit: int | None) -> list[dict]:
    images = list(blur_images(datasets, limit))
    rows = []
    for scale in scales:
        for u in widths:
            found = [estimate.blur_width(blurred(clean, u, scale), scale) for _, clean in images]
            rows.append({"scale": scale, "width": u, "n": len(found), **_errors("estimate", found, u)})
            print(f"blur x{scale} u {u:g}: mean {np.mean(found):.2f} MAE {rows[-1]['estimate_mae']:.2f}", flush=True)
    return rows


def blur_auto_part(datasets: list[str], model_name: str, widths: list[float], limit: int | None) -> dict:
    """The SR model with a blur level (DL-Net) at the true u and at the estimate: Y PSNR, border = scale."""
    choice = choose_model(model_name, "sr", None, None)
    restorer = build_restorer(choice, task="sr")
    scale = restorer.info.scales[0]
    protocol = evaluation.default_setup("sr", scale=scale).protocol
    rows = []
    for u in widths:
        pairs = ((blurred(clean, u, scale), ops.modcrop(clean, scale)) for _, clean in blur_images(datasets, limit))
        rows.append({"width": u, **true_vs_estimate(restorer, "sr", pairs, u, lambda lr: estimate.blur_width(lr, scale),
                                                    protocol, scale=scale)})
        print(f"blur auto u {u:g}: true {rows[-1]['psnr_true_level']:.3f} auto {rows[-1]['psnr_auto_level']:.3f}",
              flush=True)
    return {"model": choice.name, "range": list(restorer.card.level_range()), "scale": scale, "datasets": datasets,
            "rows": rows}


def auto_table(head: str, key: str, rows: list[dict]) -> list[str]:
    """The `--level auto` cost table (noise or blur): PSNR at the true level against PSNR at the estimate."""
    return [f"| {head} | images | PSNR at the true level | PSNR at the estimate | gap (dB) | mean level used |",
            "|---|---|---|---|---|---|",
            *(f"| {r[key]:g} | {r['n']} | {r['psnr_true_level']:.3f} | {r['psnr_auto_level']:.3f} | "
              f"{r['gap_db']:+.3f} | {r['mean_level']:.2f} |" for r in rows)]


def markdown(results: dict) -> str:
    lines = []
    if "noise" in results:
        lines += [f"Noise sigma ({results['noise_dataset']}, noisy files clipped + rounded, noise seeded per image):",
                  "", "| sigma | images | estimate (mean) | bias | MAE | max abs err | without clipping correction |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['sigma']:g} | {r['n']} | {r['corrected_mean']:.2f} | {r['corrected_bias']:+.2f} | "
                  f"{r['corrected_mae']:.2f} | {r['corrected_max_abs']:.2f} | {r['raw_mean']:.2f} "
                  f"(MAE {r['raw_mae']:.2f}) |" for r in results["noise"]]
        lines.append("")
    if "jpeg" in results:
        lines += [f"JPEG quality ({results['jpeg_dataset']}, saved by Pillow), from the file's table and from the "
                  "decoded pixels alone:", "",
                  "| quality | images | file: exact | file: MAE | pixels: exact | pixels: within 1 | pixels: MAE |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['quality']} | {r['n']} | {r['exact']} | {r['estimate_mae']:.2f} | {r.get('pixels_exact', '-')} | "
                  f"{r.get('pixels_within_1', '-')} | {r.get('pixels_mae', float('nan')):.2f} |" for r in results["jpeg"]]
        lines.append("")
    if "auto" in results:
        auto = results["auto"]
        lines += [f"`--level auto` with {auto['model']} (range {auto['range'][0]:g}-{auto['range'][1]:g}; "
                  f"{results['noise_dataset']}, RGB PSNR, no crop):", "",
                  *auto_table("sigma", "sigma", auto["rows"])]
        lines.append("")
    if "blur_fit" in results:
        fit = results["blur_fit"]
        lines += [f"Blur calibration ({' + '.join(fit['datasets'])}, {fit['n']} images, u = "
                  f"{', '.join(f'{u:g}' for u in fit['widths'])}): estimate.BLUR_CALIBRATION = "
                  f"{ {int(k): tuple(v) for k, v in fit['calibration'].items()} }", ""]
    if "blur" in results:
        lines += [f"Blur width u ({' + '.join(results['blur_datasets'])}; sr: blurred then MATLAB bicubic, 8 bits; "
                  "scale 1: blurred only):", "", "| scale | u | images | estimate (mean) | bias | MAE | max abs err |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| x{r['scale']} | {r['width']:g} | {r['n']} | {r['estimate_mean']:.2f} | {r['estimate_bias']:+.2f} | "
                  f"{r['estimate_mae']:.2f} | {r['estimate_max_abs']:.2f} |" for r in results["blur"]]
        lines.append("")
    if "blur_auto" in results:
        auto = results["blur_auto"]
        lines += [f"`--level auto` with {auto['model']} (x{auto['scale']}, range {auto['range'][0]:g}-"
                  f"{auto['range'][1]:g}; {' + '.join(auto['datasets'])}, Y PSNR, border {auto['scale']}):", "",
                  *auto_table("u", "width", auto["rows"])]
    return "\n".join(lines) + "\n"


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("noise", "jpeg", "auto", "blur-fit", "blur", "blur-auto"), action="append",
                        help="parts (default: noise, jpeg, auto)")
    parser.add_argument("--noise-dataset", default="CBSD68")
    parser.add_argument("--sigmas", default="5,15,25,35,50,75")
    parser.add_argument("--jpeg-dataset", default="LIVE1")
    parser.add_argument("--qualities", default="10,20,30,40,50,60,70,80,90")
    parser.add_argument("--model", help="a denoiser with a level range (default: the zoo's)")
    parser.add_argument("--auto-sigmas", default="15,25,50")
    parser.add_argument("--blur-fit-datasets", default="T91,BSD200", help="training images the calibration is fitted on")
    parser.add_argument("--blur-datasets", default="Set14,BSD100", help="test images of the blur parts")
    parser.add_argument("--widths", default="0,0.5,1,1.5,2,2.5,3", help="blur widths u (high-resolution pixels)")
    parser.add_argument("--scales", default="1,2,3,4", help="1: deblur's plain blur; 2-4: blur before the downscale")
    parser.add_argument("--blur-model", default="dlnet_vdsr_x2", help="the SR model with a blur level (blur-auto)")
    parser.add_argument("--limit", type=int, help="first N images of each set (default: all)")
    parser.add_argument("--out", default=str(REPO / "runs" / "level_estimation"))
    args = parser.parse_args(argv)
    parts, out = args.only or ["noise", "jpeg", "auto"], Path(args.out)
    noise_set = paths.resolve_dataset(args.noise_dataset)
    results: dict = {"noise_dataset": args.noise_dataset, "jpeg_dataset": args.jpeg_dataset, "limit": args.limit,
                     "command": "python scripts/level_estimation.py " + " ".join(argv or sys.argv[1:])}
    if "noise" in parts:
        results["noise"] = noise_part(noise_set, _numbers(args.sigmas), args.limit)
    if "jpeg" in parts:
        results["jpeg"] = jpeg_part(paths.resolve_dataset(args.jpeg_dataset), [int(q) for q in _numbers(args.qualities)],
                                    args.limit, out / "scratch")
    if "auto" in parts:
        with torch.inference_mode():
            results["auto"] = auto_part(noise_set, args.model, _numbers(args.auto_sigmas), args.limit)
    widths, scales = _numbers(args.widths), [int(v) for v in _numbers(args.scales)]
    if "blur-fit" in parts:
        results["blur_fit"] = blur_fit_part(args.blur_fit_datasets.split(","), widths, scales, args.limit)
    if "blur" in parts:
        results["blur_datasets"] = args.blur_datasets.split(",")
        results["blur"] = blur_part(results["blur_datasets"], widths, scales, args.limit)
    if "blur-auto" in parts:  # no inference_mode: DL-Net's refinement steps differentiate (the Restorer sees to it)
        results["blur_auto"] = blur_auto_part(args.blur_datasets.split(","), args.blur_model, widths, args.limit)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "level_estimation.json", results)
    write_bytes(out / "level_estimation.md", markdown(results).encode())
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
