"""`restorekit eval`: score a model on a dataset under the task's protocol; table + JSON."""

from __future__ import annotations

import argparse
from dataclasses import replace

from rich.console import Console

from restorekit import evaluation, paths
from restorekit.cli.common import results_table, write_json
from restorekit.zoo import load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on a dataset (PSNR/SSIM under the task's protocol)",
        description="Evaluate a model on a folder of clean images (or degraded/ + clean/ pairs). "
        "SR: modcrop(HR, S), MATLAB bicubic downscale by S, rounded to uint8; PSNR/SSIM on Y with border S.",
    )
    p.add_argument("--model", required=True, help="registered model name (bicubic, identity, ...) or weights file")
    p.add_argument("--dataset", required=True, help="folder of images, or a benchmark name under RESTOREKIT_DATA")
    p.add_argument("--task", required=True, choices=sorted(evaluation.TASK_PROTOCOLS))
    p.add_argument("--scale", type=int, help="SR scale factor")
    p.add_argument("--level", type=float, help="degradation level of the task's canonical degradation")
    p.add_argument("--degrade", help="degradation spec instead of the task's canonical one, e.g. 'noise:sigma=25'")
    p.add_argument("--json", help="write the full result (means, per-image values, protocol) here")
    proto = p.add_argument_group("protocol (defaults: the task's convention; every value is recorded in the JSON)")
    proto.add_argument("--crop-to", help="top-left crop of each image, e.g. 480x320 for the BSD100 SR benchmark")
    colour = proto.add_mutually_exclusive_group()
    colour.add_argument("--y-channel", dest="y_channel", action="store_true", default=None, help="metrics on Y")
    colour.add_argument("--rgb", dest="y_channel", action="store_false", help="metrics on all colour channels")
    proto.add_argument("--crop-border", type=int, help="pixels removed from each side before the metrics")
    proto.add_argument("--quantize", choices=["round", "trunc", "none"], help="how the output becomes uint8")
    proto.add_argument("--y-formula", choices=["matlab", "opencv"], help="studio-swing (MATLAB) or full-range luma")
    proto.add_argument("--seed", type=int, default=0, help="noise/mask seed (default 0)")
    proto.add_argument("--seed-mode", choices=evaluation.SEED_MODES,
                       help="'fixed': every image uses --seed (KAIR protocol, default for --task levels); "
                       "'name': derived from --seed and the file name (default with --degrade)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--limit", type=int, help="only the first N images (quick checks)")
    p.set_defaults(run=run)


def setup_from_args(args: argparse.Namespace) -> evaluation.EvalSetup:
    setup = evaluation.default_setup(
        args.task, scale=args.scale, level=args.level, degrade=args.degrade,
        crop_to=evaluation.parse_crop(args.crop_to), seed=args.seed,
        seed_mode=args.seed_mode or ("name" if args.degrade else "fixed"),
    )
    changes = {}
    if args.y_channel is not None:
        changes["y_channel"] = args.y_channel
    if args.crop_border is not None:
        changes["crop_border"] = args.crop_border
    if args.quantize is not None:
        changes["quantize"] = None if args.quantize == "none" else args.quantize
    if args.y_formula is not None:
        changes["y_formula"] = args.y_formula
    return replace(setup, protocol=replace(setup.protocol, **changes))


def run(args: argparse.Namespace) -> int:
    setup = setup_from_args(args)
    dataset = paths.resolve_dataset(args.dataset)
    model = load_model(args.model, **({"scale": setup.scale} if args.task == "sr" else {}))
    model.name = args.model
    result = evaluation.evaluate(model, dataset, setup, device=args.device, limit=args.limit)
    rows = [[r["name"], r["psnr"], r["ssim"]] for r in result["images"]]
    rows.append(["mean", result["psnr"], result["ssim"]])
    level = f" level {setup.level:g}" if setup.level is not None else ""
    scale = f" x{setup.scale}" if setup.task == "sr" else ""
    title = f"{args.model} on {dataset.name}: {setup.task}{scale}{level}"
    Console().print(results_table(title, ["image", "PSNR", "SSIM"], rows))
    if args.json:
        write_json(args.json, result)
    return 0
