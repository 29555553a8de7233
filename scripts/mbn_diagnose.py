"""Why R-MBN falls short of MBN (issue 17): which recurrent step damages which factor, and which path is alive.

    .venv/bin/python scripts/mbn_diagnose.py steps weights/rmbn.safetensors      # PSNR after each step J, H, B, R
    .venv/bin/python scripts/mbn_diagnose.py alive weights/rmbn.safetensors --factor jpeg

`steps`: per single-factor set (the tables' synthesis: MBN App. C's ranges, levels seeded by the file name, the
first --limit CBSD68 images, top-left --crop), the mean RGB PSNR (float, unrounded) of the input and of the image
after each step of the recurrent run J -> H -> B -> R. A step that lowers it on a set without its factor is a path
that has not learned to leave such images alone.

`alive`: along one factor's path on its own set, per block (input branch, stem M1-M5, hierarchy, output branch),
the share of positive activations and their mean magnitude at the full-resolution scale. DuRB-M ends in
ReLU(out + x): once a block's fused output turns negative everywhere the path below it carries nothing, its
gradient is zero, and the path's output is a constant (the JPEG path of the CPU models).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mbn_tables import SINGLE_COLUMNS, set_setup

from restorekit import evaluation, io, metrics, paths
from restorekit.models import create_model
from restorekit.train.checkpoint import load_checkpoint
from restorekit.zoo import load_model


def examples(factor: str, dataset: str, limit: int, crop: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(degraded, clean) pairs of one factor's set, as scripts/mbn_tables.py synthesises it."""
    setup = set_setup((factor,), crop, None)[0]
    pairs = []
    for path in io.list_images(paths.resolve_dataset(dataset))[:limit]:
        clean = evaluation.crop_to(io.read_image(path)[0], setup.crop_to)
        degraded, target, _ = evaluation.make_example(clean, path.name, setup)
        pairs.append((degraded, target))
    return pairs


def load_mbn(weights: str) -> torch.nn.Module:
    """A zoo name or weights file, or a training checkpoint (.pt, read weights-only: a probe run's mid-point)."""
    if not weights.endswith(".pt"):
        return load_model(weights).module.float().eval()
    state = load_checkpoint(Path(weights))
    module = create_model(state["config"]["model"]["type"], **state["config"]["model"]["args"])
    module.load_state_dict(state["model"])
    return module.eval()


def step_psnrs(module: torch.nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """'input' and each recurrent step's factor -> mean PSNR over the pairs."""
    sums: dict[str, list[float]] = {}
    for degraded, clean in pairs:
        with torch.no_grad():
            steps = module.recurrent(degraded.unsqueeze(0))
        for name, image in [("input", degraded.unsqueeze(0)), *steps]:
            sums.setdefault(name, []).append(metrics.psnr(image[0].clamp(0, 1), clean, quantize=None))
    return {name: sum(values) / len(values) for name, values in sums.items()}


def liveness(module: torch.nn.Module, factor: str, pairs: list[tuple[torch.Tensor, torch.Tensor]]
             ) -> dict[str, tuple[float, float]]:
    """block -> (share of positive activations, mean |activation|) along `factor`'s path, last (finest) call."""
    blocks = {f"inputs.{factor}": module.inputs[factor], **{f"stem.{i}": b for i, b in enumerate(module.stem)},
              **{f"hierarchy.{i}": b for i, b in enumerate(module.hierarchy[:module.taps[factor]])},
              f"outputs.{factor}": module.outputs[factor]}
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in blocks}
    latest: dict[str, tuple[float, float]] = {}  # a multi-scale path calls each block per scale: the last wins

    def recorder(name: str):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            latest[name] = (float((out > 0).float().mean()), float(out.abs().mean()))
        return hook

    handles = [block.register_forward_hook(recorder(name)) for name, block in blocks.items()]
    try:
        for degraded, _ in pairs:
            with torch.no_grad():
                module(degraded.unsqueeze(0), factor=factor)
            for name, stats in latest.items():
                seen[name].append(stats)
    finally:
        for handle in handles:
            handle.remove()
    return {name: (sum(a for a, _ in v) / len(v), sum(m for _, m in v) / len(v)) for name, v in seen.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("steps", "alive"))
    parser.add_argument("weights", help="an MBN model: a zoo name, a weights file or a training checkpoint (.pt)")
    parser.add_argument("--factor", default="jpeg", choices=SINGLE_COLUMNS, help="alive: the path to look along")
    parser.add_argument("--dataset", default="CBSD68")
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--crop", type=int, default=192)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    module = load_mbn(args.weights)
    if args.what == "steps":
        print("| set | input | " + " | ".join(f"after {f}" for f in ("jpeg", "haze", "blur", "rain")) + " |")
        print("|---|---:|---:|---:|---:|---:|")
        for factor in SINGLE_COLUMNS:
            row = step_psnrs(module, examples(factor, args.dataset, args.limit, args.crop))
            print(f"| {factor} | " + " | ".join(f"{v:.2f}" for v in row.values()) + " |")
    else:
        print("| block | positive share | mean abs activation |\n|---|---:|---:|")
        for name, (share, magnitude) in liveness(module, args.factor, examples(args.factor, args.dataset,
                                                                                args.limit, args.crop)).items():
            print(f"| {name} | {share:.3f} | {magnitude:.2e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
