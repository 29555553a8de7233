"""Throughput of the degradation engine on the training path: 96x96 RGB patches per second.

Every operator runs through `parse_spec(spec)(batch, generator)` on a batch of natural-image patches,
in one process with torch using all cores. Where an OpenCV or Pillow call does a comparable job
(Gaussian blur, JPEG, resize) it is timed on the same patches, one patch per call as a data loader
would, in rounds alternating with ours; the slowdown is the median of the per-round ratios, so a
machine that speeds up or slows down during the run moves both sides alike. Only calls doing the
same job (same input and output types, same result) carry the 1.5x target; the others are shown for
scale and marked "info". OpenCV is optional: its rows say 'n/a' when cv2 is not installed.

    .venv/bin/python bench/degrade_speed.py            # markdown table on stdout
    .venv/bin/python bench/degrade_speed.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from restorekit.degrade import parse_spec

try:
    import cv2  # type: ignore[import-not-found]
except ImportError:  # the comparison columns are optional
    cv2 = None

PATCH = 96
BATCH = 64
TARGET_OPERATOR = 2000
TARGET_MIX = 500
MAX_SLOWDOWN = 1.5

# (row label, spec, equivalent-call key or None). Fixed levels where an equivalent call is compared.
CASES: list[tuple[str, str, str | None]] = [
    ("Gaussian noise σ=25", "noise:sigma=25", None),
    ("Gaussian noise σ∈[0,75]", "noise:sigma=0..75", None),
    ("Gaussian noise, clipped+quantised", "noise:sigma=25,clip=true,quantize=true", None),
    ("pink noise", "pink:scale=6..10", None),
    ("quantisation noise", "quantize:levels=16", None),
    ("salt & pepper", "saltpepper:amount=0.025", None),
    ("Gaussian blur u=1.3", "blur:kind=gaussian,width=1.3", "gaussian_blur"),
    ("Gaussian blur u∈[0,3]", "blur:kind=gaussian,width=0..3", None),
    ("disk blur r=3", "blur:kind=disk,radius=3", None),
    ("motion blur (MBN presets)", "blur:kind=motion", None),
    ("trajectory blur", "blur:kind=trajectory,length=5..25", None),
    ("down x4 bicubic (uint8)", "down:scale=4", "resize"),
    ("down x2 decimate", "down:scale=2,method=decimate", None),
    ("up x2 bicubic", "up:scale=2", None),
    ("low-pass noise", "lowpass:ratio=0.3|0.1|0.03", None),
    ("JPEG q=30 (Pillow)", "jpeg:quality=30", "jpeg"),
    ("JPEG q=30 (OpenCV encoder)", "jpeg:quality=30,encoder=opencv", "jpeg_cv2"),
    ("square hole", "inpaint:kind=square,size=1..30", None),
    ("text overlay", "inpaint:kind=text", None),
    ("scratches", "inpaint:kind=scratch", None),
    ("free-form mask", "inpaint:kind=freeform", None),
    ("Bernoulli r∈[0,75%]", "bernoulli:ratio=0..0.75", None),
    ("rain streaks", "rain", None),
    ("haze", "haze", None),
    ("contrast change", "contrast:level=25..40", None),
    ("NLM artefacts", "nlm:strength=0.06", "nlm"),
    ("SHDD moderate", "shdd:level=moderate", None),
    ("3-factor mix", "blur:kind=gaussian,width=0..3+noise:sigma=0..50+jpeg:quality=15..50", None),
    ("MBN mixed (1..4 factors)", "mbn:factors=1..4", None),
]
MIX_ROWS = {"3-factor mix", "MBN mixed (1..4 factors)", "SHDD moderate"}
NO_TARGET = {"JPEG q=30 (Pillow)", "JPEG q=30 (OpenCV encoder)"}
NEEDS_CV2 = {"JPEG q=30 (OpenCV encoder)"}


def natural_patches(count: int, seed: int = 0) -> torch.Tensor:
    """Random 96x96 crops of scikit-image's sample photos (JPEG speed depends on content)."""
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        top = int(rng.integers(0, photo.shape[0] - PATCH))
        left = int(rng.integers(0, photo.shape[1] - PATCH))
        crops.append(photo[top : top + PATCH, left : left + PATCH])
    return torch.from_numpy(np.stack(crops).astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()


def timed_round(fn: Callable[[], object], patches: int, min_seconds: float) -> float:
    """Patches/s over one round of repeated calls lasting at least `min_seconds`."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * patches / elapsed


def alternating_rates(fns: list[Callable[[], object]], patches: int, repeats: int, min_seconds: float) -> list[list[float]]:
    """Per-round patches/s of each call, the calls taking turns round by round (after one warm-up each)."""
    for fn in fns:
        fn()  # warm-up: caches, lazy imports
    rates: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, rates):
            out.append(timed_round(fn, patches, min_seconds))
    return rates


class Equivalent(NamedTuple):
    name: str
    call: Callable[[], object]
    same_job: bool  # False: a different operation or different input/output types, shown for scale only


def equivalents(batch: torch.Tensor, threads: int) -> dict[str, list[Equivalent]]:
    """OpenCV / Pillow calls comparable with our operators, one patch per call."""
    hwc = [np.ascontiguousarray(p.permute(1, 2, 0).numpy()) for p in batch]
    hwc8 = [(p * 255).round().astype(np.uint8) for p in hwc]
    pil8 = [Image.fromarray(p) for p in hwc8]
    width = 1.3
    ksize = 2 * math.ceil(4 * width) + 1
    small = PATCH // 4

    def pil_jpeg_codec() -> list[np.ndarray]:
        out = []
        for image in pil8:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=30)
            out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue()))))
        return out

    def pil_jpeg_float() -> list[np.ndarray]:  # float image in and out, as our operator (and a PIL data pipeline) does
        out = []
        for image in hwc:
            buffer = io.BytesIO()
            Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(buffer, format="JPEG", quality=30)
            out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue()))).astype(np.float32) / 255)
        return out

    def skimage_nlm() -> list[np.ndarray]:  # what our operator calls, one patch per call
        from skimage.restoration import denoise_nl_means

        return [denoise_nl_means(p, h=0.06, patch_size=7, patch_distance=11, channel_axis=-1, fast_mode=True) for p in hwc]

    out: dict[str, list[Equivalent]] = {
        "gaussian_blur": [Equivalent("Pillow GaussianBlur (uint8, box approximation)", lambda: [p.filter(ImageFilter.GaussianBlur(width)) for p in pil8], False)],
        "jpeg": [
            Equivalent("Pillow, float image in and out", pil_jpeg_float, True),
            Equivalent("Pillow codec alone, uint8 in and out", pil_jpeg_codec, False),
        ],
        "resize": [Equivalent("Pillow resize BICUBIC (uint8, antialiased)", lambda: [p.resize((small, small), Image.BICUBIC) for p in pil8], True)],
        "nlm": [Equivalent("scikit-image denoise_nl_means (float32, patch 7, distance 11)", skimage_nlm, True)],
    }
    if cv2 is not None:
        cv2.setNumThreads(threads)
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # silence "fallbacked to CV_8U": the BasicSR recipe passes float32 to imencode on purpose
        params = [int(cv2.IMWRITE_JPEG_QUALITY), 30]

        bgr8 = [np.ascontiguousarray(p[:, :, ::-1]) for p in hwc8]  # OpenCV pipelines hold BGR images
        bgr = [np.ascontiguousarray(p[:, :, ::-1]) for p in hwc]

        def cv_jpeg_codec() -> list[np.ndarray]:
            return [cv2.imdecode(cv2.imencode(".jpg", image, params)[1], cv2.IMREAD_UNCHANGED)[:, :, ::-1] for image in bgr8]

        def cv_jpeg_float() -> list[np.ndarray]:  # BasicSR's add_jpg_compression: float32 image in and out
            out = []
            for image in bgr:
                encoded = cv2.imencode(".jpg", np.clip(image, 0, 1) * 255.0, params)[1]
                out.append((np.float32(cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)) / 255.0)[:, :, ::-1])
            return out

        out["gaussian_blur"].insert(0, Equivalent(
            "cv2.GaussianBlur (float32, replicate)",
            lambda: [cv2.GaussianBlur(p, (ksize, ksize), width, borderType=cv2.BORDER_REPLICATE) for p in hwc],
            True,
        ))
        out["jpeg_cv2"] = [
            Equivalent("cv2, float image in and out (BasicSR add_jpg_compression)", cv_jpeg_float, True),
            Equivalent("cv2 codec alone, uint8 in and out", cv_jpeg_codec, False),
        ]
        # OpenCV's NLM at the same patch (7) and search window (2*11+1 = 23): another algorithm
        # (uint8, Lab colour, tabulated weights), shown for what a SIMD implementation of it costs.
        out["nlm"].append(Equivalent(
            "cv2.fastNlMeansDenoisingColored (uint8, template 7, search 23)",
            lambda: [cv2.fastNlMeansDenoisingColored(p, None, 15, 15, 7, 23)[:, :, ::-1] for p in bgr8],
            False,
        ))
        out["resize"] += [
            Equivalent("cv2.resize INTER_CUBIC (float32, no antialiasing)", lambda: [cv2.resize(p, (small, small), interpolation=cv2.INTER_CUBIC) for p in hwc], False),
            Equivalent("cv2.resize INTER_AREA (float32, box filter)", lambda: [cv2.resize(p, (small, small), interpolation=cv2.INTER_AREA) for p in hwc], False),
        ]
    return out


def as_batch(images: list) -> torch.Tensor:
    """A list of HWC arrays or PIL images (uint8 or float in [0, 1]) -> (B, C, H, W) float64."""
    arrays = [np.asarray(image) for image in images]
    scale = 255.0 if arrays[0].dtype == np.uint8 else 1.0
    return torch.from_numpy(np.stack(arrays).astype(np.float64) / scale).permute(0, 3, 1, 2)


def agreement_psnr(ours: torch.Tensor, theirs: list) -> float:
    """PSNR (dB, RGB, no border crop) of an equivalent call's output against our operator's output."""
    mse = torch.mean((ours.double() - as_batch(theirs)) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat of 0.2 s per row")
    parser.add_argument("--only", help="run only rows whose label contains this text")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch/OpenCV threads (default: all cores)")
    args = parser.parse_args(argv)
    repeats, seconds = (1, 0.2) if args.quick else (5, 0.5)
    torch.set_num_threads(args.threads)
    batch = natural_patches(BATCH)
    generator = torch.Generator().manual_seed(0)
    compare = equivalents(batch, args.threads)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "n/a"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH} x 3 x {PATCH} x {PATCH}, "
          f"OpenCV {cv2.__version__ if cv2 is not None else 'not installed'}, {os.cpu_count()} cores, "
          f"load average at start {load}\n")
    print("| operator | spec | patches/s | target | equivalent call | its patches/s | slowdown vs it | its output vs ours, PSNR |")
    print("|---|---|---:|---|---|---:|---:|---:|")
    failures = []
    for label, spec, key in CASES:
        if args.only and args.only.lower() not in label.lower():
            continue
        if label in NEEDS_CV2 and cv2 is None:
            print(f"| {label} | `{spec}` | n/a (OpenCV not installed) | — | — | — | — | — |")
            continue
        pipe = parse_spec(spec)
        rows = compare.get(key, []) if key else []
        rates = alternating_rates([lambda pipe=pipe: pipe(batch, generator)] + [row.call for row in rows], BATCH, repeats, seconds)
        ours = statistics.median(rates[0])
        target = None if label in NO_TARGET else (TARGET_MIX if label in MIX_ROWS else TARGET_OPERATOR)
        met = "—" if target is None else (f"≥{target} ✓" if ours >= target else f"≥{target} ✗")
        if target is not None and ours < target:
            failures.append(label)
        if not rows:
            print(f"| {label} | `{spec}` | {ours:,.0f} | {met} | — | — | — | — |")
        ours_output = pipe(batch, generator)[0] if rows else None  # compared rows have fixed levels
        for i, (row, theirs_rates) in enumerate(zip(rows, rates[1:])):
            slowdown = statistics.median(t / o for t, o in zip(theirs_rates, rates[0]))
            if not row.same_job:
                mark = "info"
            else:
                mark = "✓" if slowdown <= MAX_SLOWDOWN else "✗"
                if slowdown > MAX_SLOWDOWN:
                    failures.append(f"{label} vs {row.name}")
            head = f"| {label} | `{spec}` | {ours:,.0f} | {met} " if i == 0 else "| | | | "
            agree = agreement_psnr(ours_output, row.call())
            print(f"{head}| {row.name} | {statistics.median(theirs_rates):,.0f} | {slowdown:.2f}x {mark} | {agree:.1f} dB |")
        if key and not rows:
            print("| | | | | (no equivalent installed) | n/a | n/a | n/a |")
        sys.stdout.flush()
    print()
    print("targets missed: " + (", ".join(failures) if failures else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
