"""The `restorekit` command. Each subcommand lives in its own module with `register(subparsers)`.

Errors we raise on purpose (RestorekitError) become one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from restorekit import __version__
from restorekit.errors import RestorekitError

# Subcommand modules, in the order `restorekit --help` lists them.
SUBCOMMANDS = ("restore_cmd", "eval_cmd", "train_cmd", "adafm_cmd", "zoo_cmd", "export_cmd", "serve_cmd", "demo_cmd",
               "degrade_cmd", "distortion_cmd", "analyze_cmd", "recognizer_cmd", "profile_cmd", "zssr_cmd", "simusr_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="restorekit",
        description="Restore images across degradation types and levels; measure under the papers' protocols.",
    )
    parser.add_argument("--version", action="version", version=f"restorekit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"restorekit.cli.{name}").register(subparsers)
    return parser


def one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     line: str | None = None) -> str:
    """Warnings read like our errors ('restorekit: warning: ...'), without Python's file:line and source line."""
    return f"restorekit: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except RestorekitError as err:
        print(f"restorekit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("restorekit: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The program (`restorekit`, `python -m restorekit`): `main`, then exit with its status."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
