"""`restorekit zoo list|show|import`: what is installed, for which task and levels, and how well it does."""

from __future__ import annotations

import argparse
import json

from restorekit.card import ModelCard
from restorekit.errors import RestorekitError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("zoo", help="list, show and import models (model cards)",
                              description="The model zoo: the bundled models and the user's folder "
                              "(RESTOREKIT_WEIGHTS, default ~/.cache/restorekit/weights), each model an fp16 "
                              "safetensors file with a JSON card.")
    actions = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    listing = actions.add_parser("list", help="one line per model, with whether its weights check out "
                                 "(--json: the cards as a JSON array)")
    listing.add_argument("--json", action="store_true", help="print the cards as a JSON array")
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="one model's card and whether its weights file checks out")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print the card as JSON")
    show.set_defaults(run=run_show)
    imp = actions.add_parser("import", help="convert a released checkpoint (.pth, .safetensors, .mat) into "
                             "the user's zoo, detected by its keys and shapes")
    imp.add_argument("file", help="the released weights file")
    imp.add_argument("--name", required=True, help="zoo name for it")
    imp.add_argument("--source", help="where it came from (repository and path), recorded in the card")
    imp.add_argument("--license", default="none stated", help="its license, recorded in the card")
    imp.add_argument("--task", help="the task it serves when its architecture serves several")
    imp.add_argument("--scale", type=int, help="the SR factor, for files that cannot show it (IDN's x2/x3/x4 "
                     "releases have tensors of the same shapes)")
    imp.add_argument("--levels", metavar="START,END", help="the levels a modulated model covers, e.g. 15,75 for "
                     "the released AdaFM sigma 15 -> 75 denoiser (strength 0 = START, 1 = END): what `restorekit "
                     "adafm fit-lambda` fits lambda(level) between")
    imp.add_argument("--no-measure", action="store_true", help="skip the quick benchmark run on import "
                     "(Set12/McMaster sigma 25, Set5, classic5/LIVE1 q20; only when RESTOREKIT_DATA is present)")
    imp.set_defaults(run=run_import)
    p.set_defaults(run=lambda args: p.print_help() or 2)


def _coverage_text(card: ModelCard) -> str:
    return ", ".join(card.coverage()) or "-"


def _best_result(card: ModelCard) -> str:
    if not card.results and card.measurements:  # a recogniser: accuracy / mAP rather than PSNR
        first = card.measurements[0]
        more = f" (+{len(card.measurements) - 1} more)" if len(card.measurements) > 1 else ""
        return f"{first.dataset}: {first.metric} {first.value:.3f}{more}"
    if not card.results:
        return "-"
    first = card.results[0]
    level = f" @{first.level:g}" if first.level is not None else ""
    more = f" (+{len(card.results) - 1} more)" if len(card.results) > 1 else ""
    return f"{first.dataset}{level}: {first.psnr:.2f} dB{more}"


def run_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from restorekit.zoo import entries, weights_dirs, weights_status

    found = entries()
    states = [weights_status(e) for e in found]
    if args.json:
        print(json.dumps([{**e.card.to_json(), "source": e.source, "weights": state.label}
                          for e, state in zip(found, states, strict=True)], indent=2))
        return 0
    console = Console()
    if not console.is_terminal:
        console.width = 200  # a pipe or a log: no terminal to wrap the table for
    folders = ", ".join(str(d) for d in weights_dirs())
    if not found:
        console.print(f"no models installed in {folders} (set RESTOREKIT_WEIGHTS to another folder)")
        return 0
    table = Table(title=f"model zoo: {folders}")
    for column in ("name", "family", "task", "made for", "strength", "source", "weights", "result"):
        table.add_column(column)
    for entry, state in zip(found, states, strict=True):
        card = entry.card
        table.add_row(card.name, str(card.family), card.task, _coverage_text(card),
                      "lambda(level)" if card.strength_curve else "-", entry.source,
                      state.label if state.ok else f"[red]{state.label}[/red]", _best_result(card))
    console.print(table)
    unusable = [e.card.name for e, state in zip(found, states, strict=True) if not state.ok]
    if unusable:
        console.print(f"{', '.join(unusable)}: will not load (see `restorekit zoo show NAME`)", markup=False)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from rich.console import Console

    from restorekit.zoo import find, weights_status

    entry = find(args.name)
    card = entry.card
    state = weights_status(entry)
    if args.json:
        print(json.dumps({**card.to_json(), "source": entry.source, "weights": state.label}, indent=2))
        return 0 if state.ok else 1
    console = Console(soft_wrap=True)
    console.print(f"[bold]{card.name}[/bold]  family {card.family}, task {card.task}, "
                  f"made for {_coverage_text(card)}")
    console.print(f"architecture: {card.architecture} {json.dumps(card.arguments)}", markup=False)
    if card.strength_curve:
        console.print(f"strength curve: {json.dumps(card.strength_curve)}", markup=False)
    if card.provenance:
        console.print(f"provenance: {card.provenance.source} (license {card.provenance.license})", markup=False)
    training = card.training.model_dump(exclude_none=True) if card.training else {}
    for key in ("command", "config", "data", "steps", "hardware"):
        if key in training:
            console.print(f"training {key}: {training[key]}", markup=False)
    for result in card.results:
        console.print(f"result: {result.dataset} {result.task} level {result.level}: PSNR {result.psnr} "
                      f"SSIM {result.ssim}  protocol {json.dumps(result.protocol)}", markup=False)
    for measured in card.measurements:
        console.print(f"measured: {measured.dataset} {measured.metric} {measured.value}"
                      + (f" (paper {measured.paper})" if measured.paper is not None else ""), markup=False)
    console.print(f"weights: {state.label} ({state.detail})  sha256 {card.sha256}", markup=False)
    return 0 if state.ok else 1  # a failed or impossible integrity check is not a success


def _levels(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        start, end = (float(v) for v in text.split(","))
    except ValueError:
        raise RestorekitError(f"--levels {text!r}: expected START,END such as 15,75") from None
    return start, end


def run_import(args: argparse.Namespace) -> int:
    from restorekit.zoo import import_checkpoint

    target, card = import_checkpoint(args.file, args.name, source=args.source, license=args.license,
                                     task=args.task, measure_results=not args.no_measure,
                                     arguments={"scale": args.scale} if args.scale else None,
                                     levels=_levels(args.levels))
    print(f"imported {args.file} as {card.name!r} ({card.architecture} {json.dumps(card.arguments)}) -> {target}")
    for result in card.results:
        scale = f" x{result.scale}" if result.scale else ""
        level = f" at {result.level:g}" if result.level is not None else ""
        print(f"measured: {result.dataset} {result.task}{scale}{level}: PSNR {result.psnr:.2f} dB, "
              f"SSIM {result.ssim:.4f} ({result.n_images} images)")
    return 0
