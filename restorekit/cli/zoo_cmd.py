"""`restorekit zoo list|show`: what is installed, for which task and levels, and how well it does."""

from __future__ import annotations

import argparse
import json

from restorekit.errors import ModelError

# Keys every card in `zoo list --json` carries (None / [] when the card leaves them out).
REQUIRED_KEYS = ("name", "family", "task", "file", "sha256", "results")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("zoo", help="list and show the installed models (model cards)",
                              description="The model zoo: weights/*.safetensors (fp16) with a JSON card each "
                              "(RESTOREKIT_WEIGHTS overrides the folder).")
    actions = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    listing = actions.add_parser("list", help="one line per model (--json: the cards as a JSON array)")
    listing.add_argument("--json", action="store_true", help="print the cards as a JSON array")
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="one model's card and whether its weights file checks out")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print the card as JSON")
    show.set_defaults(run=run_show)
    p.set_defaults(run=lambda args: p.print_help() or 2)


def normalised(card: dict) -> dict:
    """The card with the always-present keys filled in (levels or scales by task)."""
    out = dict(card)
    for key in REQUIRED_KEYS:
        out.setdefault(key, [] if key == "results" else None)
    if "levels" not in out and "scales" not in out:
        out["scales" if out.get("task") == "sr" else "levels"] = None
    return out


def _range_text(card: dict) -> str:
    from restorekit.infer import card_scales, level_range

    span = level_range(card)
    if span is not None:
        return f"{span[0]:g}..{span[1]:g}"
    scales = card_scales(card)
    return "x" + "/x".join(map(str, scales)) if scales else "-"


def _best_result(card: dict) -> str:
    results = card.get("results") or []
    if not results:
        return "-"
    first = results[0]
    level = f" @{first['level']:g}" if isinstance(first.get("level"), (int, float)) else ""
    psnr = f"{first['psnr']:.2f} dB" if isinstance(first.get("psnr"), (int, float)) else "?"
    return f"{first.get('dataset', '?')}{level}: {psnr}" + (f" (+{len(results) - 1} more)" if len(results) > 1 else "")


def run_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from restorekit.zoo import weights_dir, zoo_cards

    cards = [normalised(c) for c in zoo_cards()]
    if args.json:
        print(json.dumps(cards, indent=2))
        return 0
    console = Console()
    if not cards:
        console.print(f"no models installed in {weights_dir()} (set RESTOREKIT_WEIGHTS to another folder)")
        return 0
    table = Table(title=f"model zoo: {weights_dir()}")
    for column in ("name", "family", "task", "levels/scales", "strength", "result"):
        table.add_column(column)
    for card in cards:
        table.add_row(card["name"], str(card["family"]), str(card["task"]), _range_text(card),
                      "lambda(level)" if card.get("strength_curve") else "-", _best_result(card))
    console.print(table)
    return 0


def find_card(name: str) -> dict:
    from restorekit.zoo import weights_dir, zoo_cards

    cards = zoo_cards()
    for card in cards:
        if card.get("name") == name:
            return card
    names = ", ".join(c.get("name", "?") for c in cards) or f"none installed in {weights_dir()}"
    raise ModelError(f"no zoo model {name!r}; installed: {names}")


def weights_status(card: dict) -> str:
    """'ok', 'missing' or 'sha256 mismatch': the check loading would do, without building the model."""
    from restorekit.zoo import sha256, weights_dir

    path = weights_dir() / str(card.get("file") or f"{card.get('name')}.safetensors")
    if not path.is_file():
        return f"missing ({path})"
    if card.get("sha256") and sha256(path) != card["sha256"]:
        return "sha256 mismatch (file changed or corrupt)"
    return f"ok ({path})"


def run_show(args: argparse.Namespace) -> int:
    from rich.console import Console

    card = normalised(find_card(args.name))
    if args.json:
        print(json.dumps(card, indent=2))
        return 0
    console = Console(soft_wrap=True)
    console.print(f"[bold]{card['name']}[/bold]  family {card['family']}, task {card['task']}, "
                  f"levels/scales {_range_text(card)}")
    console.print(f"architecture: {card.get('architecture')} {json.dumps(card.get('arguments', {}))}")
    if card.get("strength_curve"):
        console.print(f"strength curve: {json.dumps(card['strength_curve'])}")
    training = card.get("training") or {}
    for key in ("command", "config", "data", "steps", "hardware"):
        if key in training:
            console.print(f"training {key}: {training[key]}", markup=False)
    for result in card["results"]:
        protocol = json.dumps(result.get("protocol", {}))
        console.print(f"result: {result.get('dataset')} {result.get('task', '')} level {result.get('level')}: "
                      f"PSNR {result.get('psnr')} SSIM {result.get('ssim')}  protocol {protocol}", markup=False)
    console.print(f"weights: {weights_status(card)}  sha256 {card['sha256']}", markup=False)
    return 0
