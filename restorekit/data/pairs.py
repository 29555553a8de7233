"""Paired folders (degraded/ + clean/): which degraded file goes with which clean one.

Files pair by their name without extension (a degraded `a.jpg` with a clean `a.png`). Scores over pairs
are only meaningful when the pairing is exact, so nothing is decided silently: two files with the same
stem on one side are ambiguous (an error naming both), and a file without a partner is an error naming
it, unless the caller asks to skip such files, in which case they are handed back to be reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from restorekit import io
from restorekit.errors import RestorekitError

DEGRADED, CLEAN = "degraded", "clean"
SHOWN = 5  # unpaired files named in one error line before "and N more"


@dataclass(frozen=True)
class Pair:
    name: str  # the clean file's name: the row label in reports
    clean: Path
    degraded: Path


@dataclass(frozen=True)
class Pairing:
    pairs: list[Pair]
    unpaired: list[Path]  # files of either side without a partner (only when skipping was asked for)


def is_paired_folder(folder: Path) -> bool:
    return (folder / DEGRADED).is_dir() and (folder / CLEAN).is_dir()


def by_stem(side: Path) -> dict[str, Path]:
    """{stem: file} of one side; two files with one stem would make the pairing a guess, so they are an error."""
    found: dict[str, Path] = {}
    for path in io.list_images(side):
        if path.stem in found:
            raise RestorekitError(
                f"{side}: {found[path.stem].name} and {path.name} have the same name without extension, so "
                "neither can be paired unambiguously; keep one of them"
            )
        found[path.stem] = path
    return found


def describe_unpaired(names: list[str]) -> str:
    """'degraded/b.png, clean/c.png': at most SHOWN names, then 'and N more'."""
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def relative(folder: Path, paths: list[Path]) -> list[str]:
    """Names as the user knows them: 'degraded/b.png'."""
    return [p.relative_to(folder).as_posix() for p in paths]


def match_pairs(folder: Path, *, skip_unpaired: bool = False, hint: str = "") -> Pairing:
    """Pairs of `folder`/degraded and `folder`/clean, in the clean files' name order.

    A file without a partner raises an error naming it (plus the caller's `hint`, e.g. its skip flag), or
    with `skip_unpaired` lands in `unpaired`."""
    clean, degraded = by_stem(folder / CLEAN), by_stem(folder / DEGRADED)
    unpaired = [p for stem, p in degraded.items() if stem not in clean]
    unpaired += [p for stem, p in clean.items() if stem not in degraded]
    if unpaired and not skip_unpaired:
        raise RestorekitError(
            f"{folder}: no partner for {describe_unpaired(relative(folder, unpaired))} (degraded/ and clean/ files pair by "
            "name without extension" + (f"; {hint}" if hint else "") + ")"
        )
    pairs = [Pair(path.name, path, degraded[stem]) for stem, path in clean.items() if stem in degraded]
    return Pairing(pairs, unpaired)
