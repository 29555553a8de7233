"""DL-Net's inference overhead on CPU (issue 15; a benchmark, not a test): the recursive likelihood module's extra
time relative to its backbone alone, on one LR image (default 480x320, x2, K = 5).

The paper (Table VIII) reports the autoencoder at 1.41x on a GPU at K = 5 and calls the cost small because h
is one layer. Here the backbones are the SR ones with released weights: VDSR (width 64, 20 layers; its z sits
at HR size because the released VDSR runs on the bicubic-upscaled image) and IDN (z at LR size). Each of the
K - 1 updates runs h, the record's blur + downscale, and their backward to z once. The released files are used
when ../shared/reference-weights has them (else random weights of the released widths: the time is the same).

Both subjects of a backbone run once per round, order rotated (bench/sr_speed.py's `run_rounds`), so load from
other processes hits both alike; the ratio is taken per round. On a shared machine use `--threads 1`.

    .venv/bin/python bench/dlnet_overhead.py --threads 1 --json outputs/dlnet_overhead.json
    .venv/bin/python bench/dlnet_overhead.py --rounds 1 --size 48x32       # quick look
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
from restorekit.degrade import parse_spec
from restorekit.paths import reference_weights_root
from restorekit.profile import parse_output_size
from restorekit.zoo import read_weights

BACKBONES = {"vdsr": "vdsr_official.mat", "idn": "idn_x{scale}.safetensors"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="480x320", help="LR input WIDTHxHEIGHT (default 480x320)")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    p.add_argument("--steps", type=int, default=5, help="K (K - 1 updates of z; default 5)")
    p.add_argument("--width", type=float, default=1.3, help="Gaussian blur width u of the input's record")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--backbones", default="vdsr,idn", help="comma-separated: vdsr, idn")
    p.add_argument("--weights", default=None, help="folder of released weights (default: ../shared/reference-weights)")
    p.add_argument("--json", default=None, help="write the result here")
    return p.parse_args(argv)


def build_pair(backbone: str, scale: int, steps: int, folder: Path | None) -> tuple[models.Model, models.Model, str]:
    """(backbone, DL-Net on it with the same weights, where the weights came from)."""
    name = f"dlnet_{backbone}"
    arch = models.get_architecture(name)
    path = folder / BACKBONES[backbone].format(scale=scale) if folder else None
    if path is not None and path.is_file():
        state, source = read_weights(path), f"released {path.name}"
    else:
        torch.manual_seed(0)
        plain = models.build(backbone, **({"scale": scale} if backbone == "idn" else {}))
        state, source = plain.module.state_dict(), "random (released widths)"
    converted = arch.convert(state)
    arguments = {**arch.detect(converted), "scale": scale}
    refined = models.build_loaded(name, {**arguments, "steps": steps}, converted, source)
    backbone_arguments = {k: v for k, v in arguments.items() if backbone == "idn" or k != "scale"}
    plain = models.build_loaded(backbone, backbone_arguments, {k[len("backbone."):]: v for k, v in converted.items()},
                                source)
    return plain, refined, source


def make_input(width: int, height: int, scale: int, blur: float) -> tuple[torch.Tensor, object]:
    """A smooth random HR Y image, blurred by u and bicubic-downscaled: (LR batch, its record)."""
    g = torch.Generator().manual_seed(0)
    hr = torch.nn.functional.interpolate(torch.rand(1, 1, height * scale // 4 + 1, width * scale // 4 + 1, generator=g),
                                         size=(height * scale, width * scale), mode="bilinear", align_corners=False)
    lr, record = parse_spec(f"blur:kind=gaussian,width={blur}+down:scale={scale}").apply_one(hr[0], 0)
    return lr[None], record


def measure(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = parse_output_size(args.size)
    folder = Path(args.weights) if args.weights else reference_weights_root()
    y, record = make_input(width, height, args.scale, args.width)
    rows = []
    for backbone in [b.strip() for b in args.backbones.split(",") if b.strip()]:
        plain, refined, source = build_pair(backbone, args.scale, args.steps, folder)
        call = {"scale": args.scale} if "scale" in plain.info.inputs else {}
        with torch.no_grad():
            alone = Subject(backbone, lambda p=plain, c=call: p(y, **c), 0)
            module = Subject(f"{backbone} + DL-Net K={args.steps}", lambda r=refined: r(y, record=record), 0)
            for subject in (alone, module):  # warm-up
                subject.run()
            run_rounds([alone, module], args.rounds)
        ratio = per_round_ratio(module, alone, "cpu")
        rows.append({"backbone": backbone, "weights": source, "backbone_ms": 1e3 * alone.seconds("wall"),
                     "dlnet_ms": 1e3 * module.seconds("wall"),
                     "extra_ms": 1e3 * (module.seconds("wall") - alone.seconds("wall")),
                     "backbone_cpu_ms": 1e3 * alone.seconds("cpu"), "dlnet_cpu_ms": 1e3 * module.seconds("cpu"),
                     "cpu_ratio_median": ratio[0], "cpu_ratio_min": ratio[1], "cpu_ratio_max": ratio[2],
                     "wall_ms_all": {"backbone": alone.wall, "dlnet": module.wall}})
    return {"lr_size": f"{width}x{height}", "scale": args.scale, "steps": args.steps, "blur_width": args.width,
            "rounds": args.rounds, "threads": torch.get_num_threads(), "cpu": cpu_model(), "rows": rows,
            "paper": "Table VIII: autoencoder, GPU, K=5: 1.876 s / 1.330 s = 1.41x"}


def print_report(result: dict) -> None:
    print(f"DL-Net overhead, LR {result['lr_size']} x{result['scale']}, K={result['steps']}, "
          f"{result['threads']} thread(s), {result['cpu']}")
    print(f"{'backbone':<8} {'weights':<28} {'alone ms':>10} {'DL-Net ms':>10} {'extra ms':>10} "
          f"{'DL-Net / alone (cpu, per round)':>32}")
    for row in result["rows"]:
        spread = f"{row['cpu_ratio_median']:.2f}x [{row['cpu_ratio_min']:.2f}, {row['cpu_ratio_max']:.2f}]"
        print(f"{row['backbone']:<8} {row['weights']:<28} {row['backbone_ms']:>10.1f} {row['dlnet_ms']:>10.1f} "
              f"{row['extra_ms']:>10.1f} {spread:>32}")
    print(f"paper: {result['paper']}")


def main(argv: list[str] | None = None) -> int:
    return run_bench(argv, parse_args, measure, print_report)


if __name__ == "__main__":
    sys.exit(main())
