"""`restorekit eval`: score a model on a dataset under the task's protocol; table + JSON."""

from __future__ import annotations

import argparse
import inspect
import sys
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from restorekit import evaluation, metrics, models, ops, paths
from restorekit.atomic import write_bytes, write_json
from restorekit.card import card_path
from restorekit.cli.common import results_table
from restorekit.data.pairs import is_paired_folder
from restorekit.degrade.seeding import SEED_MODES, default_seed_mode
from restorekit.degrade.spec import NOISE_PROTOCOLS
from restorekit.models import Model
from restorekit.tasks import EVAL_TASKS
from restorekit.zoo import load_model, read_weights


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on a dataset (PSNR/SSIM under the task's protocol)",
        description="Evaluate a model on a folder of clean images (or degraded/ + clean/ pairs). "
        "SR: modcrop(HR, S), MATLAB bicubic downscale by S, rounded to uint8; PSNR/SSIM on Y with border S. "
        "Paired datasets: the degraded/ files are the inputs as given (nothing is synthesised, no level is "
        "needed; --task picks the metric protocol); they pair with clean/ files by name without extension, "
        "and a file without a partner, or two files with one name (a.jpg and a.png), is an error.",
    )
    p.add_argument("--model", required=True, action="append",
                   help="registered model name (bicubic, identity, ...) or weights file; repeat to compare models "
                   "(one line each on the --levels plot)")
    p.add_argument("--dataset", required=True, help="folder of images, or a benchmark name under RESTOREKIT_DATA")
    p.add_argument("--task", required=True, choices=EVAL_TASKS)
    p.add_argument("--scale", type=float, help="SR scale factor (fractional, e.g. 3.5, for a continuous-scale "
                   "model: HR cropped to multiples of the fraction's numerator, border rounded up)")
    p.add_argument("--level", type=float,
                   help="degradation level of the task's canonical degradation. With a paired dataset nothing "
                   "is degraded: the level is recorded as stated for the given files (JSON level_source "
                   "'stated', not 'applied') and only sets the model's condition (AdaFM's lambda(level), "
                   "FFDNet's noise map)")
    p.add_argument("--degrade", action="append",
                   help="degradation spec instead of the task's canonical one, e.g. 'noise:sigma=25'; repeat for a "
                   "grid over specs")
    p.add_argument("--levels", help="level grid of the task's canonical degradation, e.g. 10,30,50,70 (SR: scales); "
                   "writes one JSON, a markdown table and a PNG plot of PSNR vs level")
    p.add_argument("--json", help="write the full result (means, per-image values, protocol) here")
    p.add_argument("--markdown", help="grid mode: markdown table path (default: beside --json, .md)")
    p.add_argument("--plot", help="grid mode: PNG plot path (default: beside --json, .png)")
    proto = p.add_argument_group("protocol (defaults: the task's convention; every value is recorded in the JSON)")
    proto.add_argument("--crop-to", help="top-left crop of each image, e.g. 480x320 for the BSD100 SR benchmark")
    colour = proto.add_mutually_exclusive_group()
    colour.add_argument("--y-channel", dest="y_channel", action="store_true", default=None, help="metrics on Y")
    colour.add_argument("--rgb", dest="y_channel", action="store_false", help="metrics on all colour channels")
    proto.add_argument("--crop-border", type=int, help="pixels removed from each side before the metrics")
    proto.add_argument("--quantize", choices=["round", "trunc", "none"], help="how the output becomes uint8")
    proto.add_argument("--y-formula", choices=["matlab", "opencv"], help="studio-swing (MATLAB) or full-range luma")
    proto.add_argument("--grey", choices=tuple(ops.GREY_FORMULAS),
                       help="turn RGB images into one channel before degrading them: y (MATLAB Y, the JPEG "
                       "benchmarks' protocol) or luma (full range); default: what a grey model's card says, "
                       "else y for grey models and none for colour models")
    proto.add_argument("--sr-input", choices=evaluation.SR_INPUTS,
                       help="how SR inputs are made: rgb-uint8 (degrade RGB, LR rounded to uint8; default for colour "
                       "models) or y-float (unrounded Y of the HR image downscaled as floating point, no rounding: "
                       "the VDSR/IDN/DnCNN-3 test scripts; default for Y-only models)")
    proto.add_argument("--ensemble", action="store_true",
                       help="average the model over the 8 flips/rotations of each input (RED-Net's x8 test-time "
                       "ensemble; 8x slower)")
    proto.add_argument("--factor",
                       help="the path a multi-branch model (MBN) runs: rain, blur, jpeg or haze (default: the task's, "
                       "e.g. derain -> rain), or 'auto': every path in turn, the factor unknown (R-MBN)")
    proto.add_argument("--noise", choices=tuple(NOISE_PROTOCOLS),
                       help="denoise: how the noisy input is made. float (default): KAIR's protocol, noise added in "
                       "float and not clipped (the DnCNN / FFDNet tables); quantized: clipped and rounded to uint8 "
                       "as noisy files are (the AdaFM paper's protocol). Recorded in the result's degradation")
    proto.add_argument("--seed", type=int, default=0, help="noise/mask seed (default 0)")
    proto.add_argument("--seed-mode", choices=SEED_MODES,
                       help="'fixed': every image uses --seed (KAIR protocol, default for --task levels); "
                       "'name': derived from --seed and the file name (default with --degrade)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--limit", type=int, help="only the first N images (quick checks)")
    p.add_argument("--skip-unpaired", action="store_true",
                   help="paired datasets: skip files of degraded/ or clean/ without a partner, with a warning "
                   "naming them (and list them in the JSON under 'unpaired'), instead of stopping with an error")
    p.add_argument("--strength", type=float,
                   help="modulation strength (AdaFM lambda) in [0, 1]; default: the model card's lambda(level)")
    p.add_argument("--no-reference", action="append", choices=metrics.NO_REFERENCE, default=[],
                   help="also score each output alone (repeatable): piqe (0 best .. 100; optional package "
                   "pypiqe), the perceptual measure for GAN-trained models, whose PSNR says little")
    p.set_defaults(run=run)


def _single(values: list[str] | str | None) -> str | None:
    """--model/--degrade are repeatable; the single-run path takes the one value."""
    if isinstance(values, list):
        return values[0] if values else None
    return values


def setup_from_args(args: argparse.Namespace) -> evaluation.EvalSetup:
    degrade = _single(args.degrade)
    setup = evaluation.default_setup(
        args.task, scale=args.scale, level=args.level, degrade=degrade,
        crop_to=evaluation.parse_crop(args.crop_to), seed=args.seed,
        seed_mode=args.seed_mode or default_seed_mode(degrade), grey=args.grey, sr_input=args.sr_input,
        ensemble=args.ensemble or None, factor=args.factor, noise=args.noise,
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


def scale_argument(name: str, task: str, scale: int | None) -> dict:
    """{'scale': S} when the model fixes its scale when built (bicubic; an IDN file, which does not record
    it); {} for models taking the scale per call (VDSR, DnCNN-3), carded zoo models and other tasks."""
    if task != "sr" or not scale:
        return {}
    path = Path(name).expanduser()
    if name in models.list_models():
        architecture, found = models.get_architecture(name), {}
    elif path.is_file() and not card_path(path).is_file():
        architecture, found = models.detect(read_weights(path), str(path))
    else:
        return {}
    builds_with_scale = "scale" in inspect.signature(architecture.build).parameters
    return {"scale": ops.as_scale(scale)} if builds_with_scale and "scale" not in (*architecture.inputs, *found) else {}


def load_for(name: str, task: str, scale: int | None) -> Model:
    return load_model(name, **scale_argument(name, task, scale))


def is_grid(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "levels", None)) or len(args.model) > 1 or len(args.degrade or []) > 1


def model_label(name: str) -> str:
    """Legend label: a registry name as is; a weights file by its stem (its folder's name for final.*)."""
    path = Path(name)
    if path.suffix in (".safetensors", ".pth", ".pt") and len(path.parts) > 1:
        return path.parent.name if path.stem == "final" else path.stem
    return name


def warn_unpaired(dataset: Path, result: dict) -> None:
    """The one warning line for files --skip-unpaired left out (they are also in the JSON)."""
    if result.get("unpaired"):
        print(f"restorekit: warning: {evaluation.unpaired_warning(dataset, result['unpaired'])}", file=sys.stderr)


def run_grid(args: argparse.Namespace) -> int:
    from restorekit.errors import RestorekitError

    if args.level is not None:
        raise RestorekitError("--level and a grid (--levels, several --model or --degrade) do not mix; use --levels")
    if args.no_reference:
        raise RestorekitError("--no-reference scores one evaluation: one --model, one --scale or --level")
    levels = evaluation.parse_levels(args.levels) if args.levels else None
    dataset = paths.resolve_dataset(args.dataset)
    paired = is_paired_folder(dataset)
    if not levels and not args.degrade and not paired:
        raise RestorekitError("several --model need --levels or --degrade to evaluate at (or a paired dataset)")
    if args.task == "sr" and not args.scale and levels:
        args.scale = levels[0]
    single = argparse.Namespace(**{**vars(args), "degrade": None, "level": None})
    base = evaluation.for_dataset(setup_from_args(single), dataset)
    if args.seed_mode is None:
        base = replace(base, seed_mode="fixed" if levels else "name")
    points = evaluation.grid_points(base, levels, args.degrade if levels is None else None)
    if levels and args.degrade:
        points += evaluation.grid_points(replace(base, seed_mode=args.seed_mode or "name"), None, args.degrade)
    models = {}
    for name in args.model:
        label = model_label(name)
        if label in models:
            label = name
        if args.task == "sr" and levels:
            models[label] = (lambda scale, n=name: load_for(n, "sr", scale))
        else:
            models[label] = load_for(name, args.task, args.scale)
    console = Console(stderr=True)
    grid = evaluation.evaluate_grid(
        models, dataset, points, device=args.device, limit=args.limit, strength=args.strength,
        skip_unpaired=args.skip_unpaired, progress=lambda m, x: console.print(f"  {m} @ {x}", highlight=False))
    warn_unpaired(dataset, grid)
    rows = [[m] + [row["psnr"] for row in grid["results"][m]] for m in grid["models"]]
    Console().print(results_table(f"PSNR on {dataset.name}: {args.task}", ["model", *grid["x"]], rows))
    markdown = evaluation.grid_markdown(grid)
    json_path = Path(args.json) if args.json else None
    md_path = Path(args.markdown) if args.markdown else (json_path.with_suffix(".md") if json_path else None)
    png_path = Path(args.plot) if args.plot else (json_path.with_suffix(".png") if json_path else None)
    if json_path:
        write_json(json_path, grid)
    if md_path:
        write_bytes(md_path, (markdown + "\n").encode())
    if png_path:
        from restorekit.plots import plot_levels

        plot_levels(grid, png_path)
    written = [str(p) for p in (json_path, md_path, png_path) if p]
    if written:
        Console(stderr=True).print("wrote " + ", ".join(written), highlight=False)
    return 0


def run(args: argparse.Namespace) -> int:
    if is_grid(args):
        return run_grid(args)
    args.model = _single(args.model)
    for measure in args.no_reference:
        metrics.require_no_reference(measure)
    setup = setup_from_args(args)
    dataset = paths.resolve_dataset(args.dataset)
    model = load_for(args.model, setup.task, setup.scale)
    model.name = args.model
    result = evaluation.evaluate(model, dataset, setup, device=args.device, limit=args.limit, strength=args.strength,
                                 skip_unpaired=args.skip_unpaired, no_reference=tuple(args.no_reference))
    warn_unpaired(dataset, result)
    extra = list(args.no_reference)
    rows = [[r["name"], r["psnr"], r["ssim"], *(r[m] for m in extra)] for r in result["images"]]
    rows.append(["mean", result["psnr"], result["ssim"], *(result[m] for m in extra)])
    stated = " (stated, not applied)" if result["level_source"] == "stated" else ""
    level = f" level {setup.level:g}{stated}" if setup.level is not None else ""
    scale = f" x{setup.scale}" if setup.task == "sr" else ""
    title = f"{args.model} on {dataset.name}: {setup.task}{scale}{level}"
    Console().print(results_table(title, ["image", "PSNR", "SSIM", *(m.upper() for m in extra)], rows))
    if args.json:
        write_json(args.json, result)
    return 0
