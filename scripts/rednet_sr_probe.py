"""Is the blind RED30 SR model under-trained or mis-evaluated? (issue 16): its gain over bicubic on its own TRAINING
batches, per scale. A model that beats bicubic by little on the very patches it trains on is under-fitted (more
steps needed), not a victim of a test-protocol mismatch.

    .venv/bin/python scripts/rednet_sr_probe.py runs/rednet/sr_blind_red30_phase3/final.safetensors
    .venv/bin/python scripts/rednet_sr_probe.py runs/rednet/sr_blind_red30_phase3/final.safetensors --tiles 20

`--tiles N` asks instead whether the model learnt a regime it never meets at test: Set5 (the benchmark SR input,
Y) restored whole and cut into N-px LR tiles run without any context, as its training patches are. Unpadded
RED30 shrinks its input by 30 px before the deconvs grow it back, so on small training patches no output pixel
sees its whole receptive field; a model that scores higher on context-free tiles than on whole images learnt
that border regime only.

Draws the training batches of the model's config (steps 5,000-5,059 of its step plan: the same patches,
degradations and scale draw as training would) and prints, per scale, the mean MSE of MATLAB bicubic and of the
model against the HR patch, and the gain in dB; then bicubic's PSNR on the config's validation crops (the
reference for the training log's val_psnr).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from restorekit import io, metrics, ops, paths, zoo
from restorekit.distributed import Dist
from restorekit.evaluation import EvalSetup, setup_for_model, sr_pair
from restorekit.infer import run_model, run_tiled
from restorekit.train.config import load_config
from restorekit.train.trainer import Prepared, make_loader, prepare

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "rednet" / "sr_blind_red30_phase3.yaml"


def prepared_probe(config: Path) -> Prepared:
    """The config's data and validation, prepared once for both measurements (decoding the images is slow)."""
    return prepare(load_config(config, ["data.train.workers=0", "device=cpu"]), Dist())


def gains(weights: Path, prepared: Prepared, first: int, steps: int) -> dict[int, tuple[float, float, int]]:
    """scale -> (bicubic MSE, model MSE, batches) over training steps [first, first + steps)."""
    model = zoo.load_model(str(weights)).module.eval()
    sums: dict[int, list[tuple[float, float]]] = {}
    for raw in make_loader(prepared, first, first + steps, Dist()):
        scale = prepared.levels[int(raw["level"][0])].scale
        with torch.no_grad():
            restored = model(raw["lq"], scale=scale)
        bicubic = ops.imresize(raw["lq"], scale)
        sums.setdefault(scale, []).append((float(((bicubic - raw["hq"]) ** 2).mean()),
                                           float(((restored - raw["hq"]) ** 2).mean())))
    return {s: (float(np.mean([b for b, _ in v])), float(np.mean([m for _, m in v])), len(v))
            for s, v in sorted(sums.items())}


def bicubic_validation(prepared: Prepared) -> dict[str, float]:
    """Bicubic's PSNR on the config's validation levels, scored like the training log's val_psnr."""
    return {level.name: float(np.mean([float(metrics.psnr_batch(ops.imresize(lq, level.conditions["scale"]).clamp(0, 1),
                                                                 hq, level.protocol)) for lq, hq in level.pairs]))
            for level in prepared.validation}


def context_gap(weights: Path, dataset: str, tile: int, scales: tuple[int, ...] = (2, 3, 4)
                ) -> dict[int, dict[str, float]]:
    """scale -> mean PSNR (Y, border = scale, rounded) of bicubic, the model on whole images, and the model on
    `tile`-px LR tiles without context, over the benchmark's images (the SR input of `restorekit eval`)."""
    model = zoo.load_model(str(weights))
    images = [io.read_image(path)[0] for path in io.list_images(paths.resolve_dataset(dataset))]
    table = {}
    for scale in scales:
        setup = setup_for_model(EvalSetup(task="sr", scale=scale), model)  # a grey model: Y-float input
        scores: dict[str, list[float]] = {"bicubic": [], "whole": [], "tiles": []}
        for image in images:
            lr, hr = sr_pair(image, setup)
            with torch.no_grad():
                outputs = {"bicubic": ops.imresize(lr.double(), scale).float(),
                           "whole": run_model(model, lr, scale=scale),
                           "tiles": run_tiled(model, lr, tile=tile, overlap=0, context=0, scale=scale)}
            for name, output in outputs.items():
                scores[name].append(metrics.psnr(output.clamp(0, 1), hr, crop_border=scale))
        table[scale] = {name: float(np.mean(values)) for name, values in scores.items()}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--config", type=Path, default=CONFIG, help="the training config whose batches to draw")
    parser.add_argument("--first-step", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--tiles", type=int, metavar="N", help="instead: whole images vs N-px LR tiles without context")
    parser.add_argument("--dataset", default="Set5", help="--tiles: the benchmark (default Set5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.tiles:
        print(f"| scale | bicubic | whole image | {args.tiles}-px LR tiles, no context |\n|---|---:|---:|---:|")
        for scale, row in context_gap(args.weights, args.dataset, args.tiles).items():
            print(f"| x{scale} | {row['bicubic']:.2f} | {row['whole']:.2f} | {row['tiles']:.2f} |")
        return
    prepared = prepared_probe(args.config)
    print("| scale | batches | bicubic MSE | model MSE | gain over bicubic (dB) |\n|---|---:|---:|---:|---:|")
    for scale, (bicubic, restored, count) in gains(args.weights, prepared, args.first_step, args.steps).items():
        print(f"| x{scale} | {count} | {bicubic:.5f} | {restored:.5f} | {10 * np.log10(bicubic / restored):+.2f} |")
    print("\nbicubic on the validation crops (dB): " + ", ".join(f"{name} {value:.2f}" for name, value in
                                                              bicubic_validation(prepared).items()))


if __name__ == "__main__":
    main()
