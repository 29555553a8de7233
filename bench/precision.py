"""Precision benchmark (issue 12; a benchmark, not a test): fp32 against bf16 autocast + channels_last on
this CPU, per registered architecture, side by side in one run.

- training step: forward + L1 loss + backward + Adam step, batch 16 of 48x48 output patches (SR models
  take 48/scale LR patches, so every row does the work of 48x48 output pixels),
  fp32 against `torch.autocast("cpu", bfloat16)` with the module and the batch in channels_last;
- inference: one 480x320 image (SR models: the 480x320 / scale LR image, so the output is 480x320) through
  `infer.run_model`, precision 'fp32' against 'bf16' (the product's
  path: autocast over fp32 weights, channels_last input), whether or not the architecture's flag allows it
  (the flag column says; `tests/test_model_contract.py` decides the flags on accuracy, not speed);
- the accuracy cost on a trained model: the zoo's `adafm_denoise_s15_s75` on the first 6 CBSD68 images at
  sigma 50 through `restorekit.evaluation.evaluate` (strength from the card), fp32 and under bf16 autocast;
  without the data folder, scikit-image sample images with seeded noise (the table says which).

fp32 and bf16 run in alternating rounds and each ratio is the median of the per-round ratios, so load
from other processes hits both sides alike. Weights are random (same cost as trained ones). Rows use each
architecture's representative size (the paper's or the released model's); an architecture registered
later without an entry in REPRESENTATIVE runs at its builder defaults.

    nice .venv/bin/python bench/precision.py                  # the full run (minutes on 2 cores)
    .venv/bin/python bench/precision.py --rounds 1 --only dncnn --skip-psnr   # quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch import nn

# Builder arguments per architecture: what the paper / released model uses (a row each).
REPRESENTATIVE: dict[str, list[dict]] = {
    "adafm_net": [{"features": 64, "blocks": 16}, {"features": 32, "blocks": 8}],
    "dncnn": [{"in_channels": 1}, {"in_channels": 3}],
    "dncnn3": [{}],
    "ffdnet": [{}, {"channels": 3, "features": 96, "depth": 12}],
    "vdsr": [{}],
    "idn": [{"scale": 2}],
    "bicubic": [{"scale": 4}],
    "identity": [],  # nothing to time
}
BATCH, PATCH = 16, 48
IMAGE = (320, 480)  # H x W: BSD100's 480x320


class ConvStack(nn.Module):
    """The issue's preliminary measurement: eight 64-channel 3x3 convs with ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, padding=1), nn.ReLU()]
        for _ in range(6):
            layers += [nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(64, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating fp32/bf16 rounds per measurement (default 3)")
    p.add_argument("--steps", type=int, default=2, help="timed training steps per round (default 2)")
    p.add_argument("--only", default="", help="comma-separated architecture names (default: every registered one)")
    p.add_argument("--skip-psnr", action="store_true", help="skip the zoo model's PSNR")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time, which other processes on a busy machine "
                        "barely change (use with --threads 1, where it equals the work done)")
    return p.parse_args(argv)


CLOCK = time.perf_counter


def conditions(info, height: int, width: int) -> dict:
    """Sample call conditions: the mid slider, sigma 25, the first scale."""
    out: dict = {}
    if "strength" in info.inputs:
        out["strength"] = 0.5
    if "level" in info.inputs:
        out["level"] = 25.0
    elif "level_map" in info.inputs:
        out["level_map"] = torch.full((1, 1, height, width), 25.0)
    if "scale" in info.inputs:
        out["scale"] = info.scales[0]
    return out


def median_ratio(fp32: list[float], bf16: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(fp32, bf16, strict=True))


def time_training(model, rounds: int, steps: int) -> tuple[list[float], list[float]] | None:
    """Seconds per training step, fp32 and bf16 autocast + channels_last, per round."""
    from restorekit.models import Model

    module = model.module if isinstance(model, Model) else model
    if not any(p.requires_grad for p in module.parameters()):
        return None
    channels = (model.info.in_channels or 3) if isinstance(model, Model) else 3
    info = model.info if isinstance(model, Model) else None
    scale = info.scales[0] if info else 1
    size = PATCH // scale
    call_args = conditions(info, size, size) if info else {}
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, channels, size, size, generator=generator)
    target = torch.rand(BATCH, channels, size * scale, size * scale, generator=generator)

    def call(m, batch):
        return model.info.architecture.call(m, batch, **call_args) if info and info.architecture.call else \
            m(batch, **call_args)

    def run(bf16: bool) -> float:
        m = module.train()
        if bf16:
            m = m.to(memory_format=torch.channels_last)
        batch = x.contiguous(memory_format=torch.channels_last) if bf16 else x
        optimiser = torch.optim.Adam(m.parameters(), lr=1e-4)

        def step() -> None:
            optimiser.zero_grad(set_to_none=True)
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = call(m, batch)
            else:
                out = call(m, batch)
            loss = (out.float() - target).abs().mean()
            loss.backward()
            optimiser.step()

        step()  # warm-up (allocations, oneDNN primitive creation)
        started = CLOCK()
        for _ in range(steps):
            step()
        seconds = (CLOCK() - started) / steps
        m.to(memory_format=torch.contiguous_format)
        return seconds

    fp32, bf16 = [], []
    for _ in range(rounds):
        fp32.append(run(False))
        bf16.append(run(True))
    module.eval()
    return fp32, bf16


def time_inference(model, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds for one 480x320 image through infer.run_model, fp32 and precision='bf16', per round."""
    from restorekit import infer

    channels = model.info.in_channels or 3
    height, width = (v // model.info.scales[0] for v in IMAGE)
    image = torch.rand(channels, height, width, generator=torch.Generator().manual_seed(1))
    call_args = conditions(model.info, height, width)

    def run(precision: str, repeats: int = 1) -> float:
        started = CLOCK()
        for _ in range(repeats):
            infer.run_model(model, image, "cpu", precision, **call_args)
        return (CLOCK() - started) / repeats

    run("bf16")  # warm-up; cheap models (bicubic) are timed over enough calls to fill 0.3 s
    repeats = max(1, min(50, round(0.3 / max(run("fp32"), 1e-4))))
    fp32, bf16 = [], []
    for _ in range(rounds):
        fp32.append(run("fp32", repeats))
        bf16.append(run("bf16", repeats))
    return fp32, bf16


def label(name: str, arguments: dict) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in arguments.items())
    return f"{name}({shown})" if shown else name


def psnr_cost(model_name: str = "adafm_denoise_s15_s75", sigma: float = 50, limit: int = 6) -> tuple[str, float, float]:
    """(what was measured, fp32 PSNR, bf16 PSNR) of a zoo denoiser."""
    from restorekit import infer
    from restorekit.paths import data_root
    from restorekit.zoo import load_model

    model = load_model(model_name)
    cpu = torch.device("cpu")
    root = data_root()
    folder = root / "test" / "CBSD68" if root is not None else None
    if folder is not None and folder.is_dir():
        try:
            from restorekit.evaluation import default_setup, evaluate

            setup = default_setup("denoise", level=sigma)
            fp32 = evaluate(model, folder, setup, limit=limit)
            with infer.precision_context(cpu, "bf16"):  # the same pipeline, every model call under bf16 autocast
                bf16 = evaluate(model, folder, setup, limit=limit)
            what = (f"{model_name}, first {limit} CBSD68 images, sigma {sigma:g}, `restorekit.evaluation.evaluate` "
                    f"(strength {fp32['strength']:.3f} from the card, {fp32['protocol'].get('degradation')})")
            return what, fp32["psnr"], bf16["psnr"]
        except Exception as err:  # noqa: BLE001 - evaluation is being migrated: fall back, and say so
            print(f"(restorekit.evaluation failed: {type(err).__name__}: {err}; computing directly)")
            images = sorted(folder.glob("*.png"))[:limit]
            source = f"first {limit} CBSD68 images"
    else:
        images, source = None, "skimage astronaut/chelsea/coffee/rocket/immunohistochemistry/hubble crops (no data folder)"
    return _direct_psnr(model, images, source, sigma)


def _direct_psnr(model, images, source: str, sigma: float) -> tuple[str, float, float]:
    import numpy as np

    from restorekit import infer, io, metrics

    if images:
        cleans = [io.read_image(path)[0] for path in images]
    else:
        from skimage import data

        arrays = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry(),
                  data.hubble_deep_field()]
        cleans = [torch.from_numpy(a[:320, :480].astype(np.float32) / 255).permute(2, 0, 1) for a in arrays]
    strength = infer.resolve_strength(model, sigma, None)
    totals = {"fp32": [], "bf16": []}
    for clean in cleans:
        np.random.seed(0)  # KAIR: the same seed per image
        noisy = clean + torch.from_numpy(np.random.normal(0, sigma / 255, clean.shape).astype(np.float32))
        for precision in totals:
            out = infer.run_model(model, noisy, "cpu", precision, strength=strength).clamp(0, 1)
            totals[precision].append(float(metrics.psnr(out, clean)))
    what = f"{model.name}, {source}, sigma {sigma:g}, direct (`metrics.psnr`, np.random.seed(0) per image)"
    return what, statistics.mean(totals["fp32"]), statistics.mean(totals["bf16"])


def machine() -> str:
    name, flags = platform.processor() or "?", ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = next(line for line in text.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    wanted = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16") if f" {f}" in flags]
    return f"{name}, {os.cpu_count()} cores, flags: {' '.join(wanted) or 'no AVX-512'}"


def main(argv: list[str] | None = None) -> int:
    global CLOCK
    args = parse_args(argv)
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    from restorekit import models

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine()}, "
          f"mkldnn bf16 supported: {torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()}, "
          f"load average at start {load:.2f}; {args.rounds} rounds, {args.steps} training steps per round, "
          f"{args.clock} clock\n")
    rows: list[tuple] = []
    only = {n for n in args.only.split(",") if n}
    cases: list[tuple[str, object, str]] = []
    if not only or "convstack" in only:
        torch.manual_seed(0)
        cases.append(("8 x conv 64ch 3x3 (issue's probe)", ConvStack(), "-"))
    for name in models.architectures():
        if only and name not in only:
            continue
        for arguments in REPRESENTATIVE.get(name, [{}]):
            torch.manual_seed(0)
            try:
                model = models.build(name, **arguments)
            except Exception as err:  # noqa: BLE001 - a family needing arguments we do not know: say so
                print(f"skipped {label(name, arguments)}: {err}")
                continue
            flag = "yes" if model.info.bf16 else "no"
            cases.append((label(name, arguments), model, flag))

    print("| model | bf16 flag | train step fp32 ms | bf16 ms | train speed-up | 480x320 fp32 ms | bf16 ms | "
          "inference speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for title, model, flag in cases:
        training = time_training(model, args.rounds, args.steps)
        inference = time_inference(model, args.rounds) if flag != "-" else None
        cells = [title, flag]
        if training:
            cells += [f"{1000 * statistics.median(training[0]):.0f}", f"{1000 * statistics.median(training[1]):.0f}",
                      f"**{median_ratio(*training):.2f}x**"]
        else:
            cells += ["-", "-", "no weights"]
        if inference:
            cells += [f"{1000 * statistics.median(inference[0]):.0f}", f"{1000 * statistics.median(inference[1]):.0f}",
                      f"**{median_ratio(*inference):.2f}x**"]
        else:
            cells += ["-", "-", "-"]
        print("| " + " | ".join(cells) + " |", flush=True)
        rows.append(cells)

    if not args.skip_psnr:
        what, fp32, bf16 = psnr_cost()
        print(f"\nPSNR cost: {what}: fp32 {fp32:.3f} dB, bf16 {bf16:.3f} dB ({bf16 - fp32:+.3f} dB)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average at the end {load:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
