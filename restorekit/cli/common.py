"""Helpers shared by subcommands: progress bars, one-line file errors, rich tables."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)


def progress_bar(show: bool = True) -> Progress:
    """A transient progress bar on stderr, shown only on a terminal (silent in logs and CI) and when
    `show` (under torchrun only rank 0 draws one: several bars on one terminal overwrite each other)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console, disable=not (show and console.is_terminal), transient=True)


def error_line(source: str | Path, err: BaseException) -> str:
    """'file: reason' exactly once, whether or not the error already names the file."""
    from restorekit.errors import RestorekitError

    text = str(err) if isinstance(err, RestorekitError) else f"{type(err).__name__}: {err}"
    return text if str(source) in text else f"{source}: {text}"


def results_table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column not in ("image", "model", "dataset") else "left")
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) and abs(v) < 1.5 else
                        f"{v:.2f}" if isinstance(v, float) else str(v) for v in row))
    return table
