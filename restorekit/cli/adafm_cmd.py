"""`restorekit adafm`: tools for modulated (AdaFM) models.

    restorekit adafm sweep --model M --dataset D --task denoise --level 45      # PSNR versus lambda
    restorekit adafm fit-lambda --model M --dataset D --task denoise --levels 25,35,45,50,60 [--write-card]
    restorekit adafm fit-lambda --model M --dataset D --task denoise --sweeps FIT.json --order 3  # refit only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from restorekit import evaluation, io, modulation, paths, plots
from restorekit.atomic import write_json
from restorekit.card import card_path, write_card
from restorekit.cli.common import results_table
from restorekit.degrade.spec import NOISE_PROTOCOLS
from restorekit.errors import RestorekitError
from restorekit.models import Model
from restorekit.tasks import EVAL_TASKS
from restorekit.zoo import find, load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("adafm", help="strength sweeps and lambda(level) fitting for AdaFM models")
    sub = p.add_subparsers(dest="adafm_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True, help="zoo name or carded safetensors file of an AdaFM model")
    common.add_argument("--dataset", required=True, help="validation images (folder or benchmark name)")
    common.add_argument("--task", required=True, choices=EVAL_TASKS)
    common.add_argument("--grid-step", type=float, default=0.01, help="lambda grid step (paper: 0.01)")
    common.add_argument("--limit", type=int, help="only the first N images")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--noise", choices=tuple(NOISE_PROTOCOLS), default="float",
                        help="denoise inputs: float (KAIR, default) or quantized (clipped and rounded to uint8: the "
                        "AdaFM paper's protocol, see restorekit eval --noise)")
    common.add_argument("--device", default="cpu")
    common.add_argument("--json", help="write the sweep(s) here")
    common.add_argument("--plot", help="PNG of PSNR versus lambda, one line per level")

    sweep = sub.add_parser("sweep", parents=[common], help="mean PSNR for each lambda at one level")
    sweep.add_argument("--level", required=True, help="input level, or several separated by commas (25,45,60)")
    sweep.set_defaults(run=run_sweep)

    fit = sub.add_parser("fit-lambda", parents=[common], help="best lambda per middle level, then fit lambda(level)")
    fit.add_argument("--levels", help="comma-separated middle levels, e.g. 25,35,45,50,60")
    fit.add_argument("--sweeps", help="reuse the sweeps saved by an earlier fit-lambda --json of this model "
                                      "instead of measuring them again (--dataset then only labels them)")
    fit.add_argument("--free-fit", action="store_true",
                     help="the paper's unconstrained least squares; by default the curve passes exactly through "
                          "lambda 0 at the start level and 1 at the end level")
    fit.add_argument("--order", default="auto", help="polynomial order: 1, 3 or auto (default)")
    fit.add_argument("--kind", choices=["polynomial", "piecewise"], default="polynomial")
    fit.add_argument("--write-card", action="store_true", help="store the fitted curve in the model's card")
    fit.set_defaults(run=run_fit)


def _grid(step: float) -> list[float]:
    if not 0 < step <= 1:
        raise RestorekitError(f"--grid-step must be in (0, 1], got {step}")
    n = round(1 / step)
    return [round(i / n, 6) for i in range(n + 1)]


def _scale_at(model: Model, level: float) -> float | None:
    """The SR slider's scale at `level` (its level is the scale); None for every other model."""
    return level if model.info.scale_range is not None else None


def _pairs(args: argparse.Namespace, level: float, model: Model) -> tuple[list, evaluation.EvalSetup]:
    scale = _scale_at(model, level)
    setup = evaluation.setup_for_model(evaluation.default_setup(
        args.task, scale=scale, level=None if scale else level, seed=args.seed, noise=args.noise), model)
    folder = paths.resolve_dataset(args.dataset)
    pairs = []
    for name, path, _ in evaluation.dataset_items(folder)[: args.limit]:
        pairs.append(evaluation.make_input(io.read_image(path)[0], name, setup))
    if not pairs:
        raise RestorekitError(f"{folder}: no images found")
    return pairs, setup


def _modulated(name: str) -> Model:
    model = load_model(name)
    if not model.info.modulated:
        raise RestorekitError(f"{name}: not a modulated model (no strength control)")
    return model


def sweep_level(model: Model, args: argparse.Namespace, level: float) -> dict:
    pairs, setup = _pairs(args, level, model)
    grid = _grid(args.grid_step)
    scale = _scale_at(model, level)
    psnrs = modulation.strength_sweep(model, pairs, setup.protocol, grid, args.device,
                                      **({"scale": scale} if scale else {}))
    best = grid[max(range(len(grid)), key=psnrs.__getitem__)]
    return {"level": level, "strengths": grid, "psnr": psnrs, "best_strength": best,
            "protocol": setup.describe(), "n_images": len(pairs)}


def run_sweep(args: argparse.Namespace) -> int:
    model = _modulated(args.model)
    try:
        levels = [float(v) for v in str(args.level).split(",")]
    except ValueError as err:
        raise RestorekitError(f"--level {args.level!r}: expected a number or numbers separated by commas") from err
    results = [sweep_level(model, args, level) for level in levels]
    for result in results:
        rows = [[f"{lam:.2f}", p] for lam, p in zip(result["strengths"], result["psnr"], strict=True)]
        Console().print(results_table(f"{args.model}: PSNR vs lambda at level {result['level']:g}",
                                      ["lambda", "PSNR"], rows))
        Console().print(f"best lambda: {result['best_strength']:.2f}")
    if args.json:
        write_json(args.json, {"model": args.model, **results[0]} if len(results) == 1
                   else {"model": args.model, "sweeps": results})
    if args.plot:
        curve = _card_curve(model)
        plots.plot_strength_sweeps(results, args.plot, f"{args.model}: PSNR vs lambda", curve)
    return 0


def _saved_sweeps(path: str, model_name: str) -> dict:
    """An earlier `fit-lambda --json` file of `model_name` (its sweeps, and where they were measured)."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise RestorekitError(f"{path}: cannot read saved sweeps ({err})") from err
    if saved.get("model") != model_name or not saved.get("sweeps"):
        raise RestorekitError(f"{path}: not a fit-lambda --json file of {model_name}")
    return saved


def _card_curve(model: Model) -> modulation.StrengthCurve | None:
    curve = model.card.strength_curve if model.card is not None else None
    return modulation.StrengthCurve.from_dict(curve) if curve else None


def _card_file(name: str) -> Path:
    """The card file of a zoo model (by name) or of a carded weights file."""
    path = Path(name).expanduser()
    target = card_path(path) if path.is_file() else card_path(find(name).weights)
    if not target.is_file():
        raise RestorekitError(f"{name}: cannot locate its model card file to update")
    return target


def run_fit(args: argparse.Namespace) -> int:
    model = _modulated(args.model)
    card = model.card
    if card is None or (card.levels is None and model.info.scale_range is None):
        raise RestorekitError(f"{args.model}: needs a model card with 'levels': [start, end]")
    # an SR slider's levels are its scales (start = the basic model's, end = the adapted one's)
    start, end = (card.levels[0], card.levels[-1]) if card.levels else (model.info.arguments["scale"],
                                                                        model.info.arguments["end_scale"])
    provenance = {"dataset": args.dataset, "limit": args.limit, "grid_step": args.grid_step, "seed": args.seed,
                  "task": args.task, **({"noise": args.noise} if args.noise != "float" else {})}
    if args.sweeps:
        saved = _saved_sweeps(args.sweeps, args.model)
        sweeps = saved["sweeps"]
        levels = [s["level"] for s in sweeps]
        grid = sweeps[0]["strengths"]
        provenance = saved.get("fitted_on") or {**provenance, "grid_step": round(grid[1] - grid[0], 6)}
    elif args.levels:
        try:
            levels = [float(v) for v in args.levels.split(",")]
        except ValueError as err:
            raise RestorekitError(f"--levels {args.levels!r}: expected numbers separated by commas") from err
        sweeps = [sweep_level(model, args, level) for level in levels]
    else:
        raise RestorekitError("fit-lambda needs --levels (measure the sweeps) or --sweeps (reuse saved ones)")
    order = args.order if args.order == "auto" else int(args.order)
    curve = modulation.fit_curve(start, end, {s["level"]: s["best_strength"] for s in sweeps},
                                 order=order, kind=args.kind, pin_ends=not args.free_fit)
    # Where lambda(level) came from: the validation set must be disjoint from the test set.
    fitted_on = {**provenance, "levels": levels, "pinned_ends": not args.free_fit}
    rows = [[f"{s['level']:g}", f"{s['best_strength']:.2f}", f"{curve(s['level']):.3f}"] for s in sweeps]
    Console().print(results_table(f"{args.model}: lambda(level)", ["level", "best lambda", "fitted"], rows))
    Console().print(f"curve: {curve.to_dict()}")
    if args.json:
        write_json(args.json, {"model": args.model, "curve": curve.to_dict(), "fitted_on": fitted_on, "sweeps": sweeps})
    if args.plot:
        plots.plot_strength_sweeps(sweeps, args.plot, f"{args.model}: PSNR vs lambda, fitted lambda(level) dotted",
                                   curve)
    if args.write_card:
        target = _card_file(args.model)
        write_card(target, card.model_copy(update={"strength_curve": {**curve.to_dict(), "fitted_on": fitted_on}}))
        Console().print(f"wrote the curve into {target}")
    return 0
