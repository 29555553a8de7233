"""Where the shared benchmark data lives: RESTOREKIT_DATA, else ../shared/data when present."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path | None:
    """The data folder, or None when it is not on this machine (tests then skip with a reason)."""
    env = os.environ.get("RESTOREKIT_DATA")
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    for candidate in (Path.cwd() / ".." / "shared" / "data", _REPO_ROOT / ".." / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def reference_weights_root() -> Path | None:
    """The folder of papers' released weights, beside the data folder (never shipped in our zoo)."""
    env = os.environ.get("RESTOREKIT_REFERENCE_WEIGHTS")
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    root = data_root()
    if root is None:
        return None
    candidate = root.parent / "reference-weights"
    return candidate if candidate.is_dir() else None


def resolve_dataset(name_or_path: str) -> Path:
    """A dataset argument is a folder path, or a benchmark name looked up under the data root (test/, train/,
    pairs/: `Rain100H` is the paired set data/pairs/Rain100H)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    root = data_root()
    if root is not None:
        for sub in ("test", "train", "pairs"):
            candidate = root / sub / name_or_path
            if candidate.is_dir():
                return candidate
    from restorekit.errors import RestorekitError

    raise RestorekitError(
        f"{name_or_path}: no such dataset folder"
        + ("" if root is None else f" (also looked under {root}/test, {root}/train and {root}/pairs)")
    )
