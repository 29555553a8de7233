"""Checkpoints that survive a SIGKILL and resume bit-exactly.

A checkpoint holds the model, EMA, optimizer, scheduler, loss scaler, level-strategy and uncertainty
states, every rank's RNG states, the data position (the next step: the sampler is a pure function of
seed and step) and, for staged runs, the stage. It is written with `restorekit.atomic.atomic_write`
(temporary file, fsync, rename), so a crash leaves either the old or the new checkpoint, never half of one.
The recipe decides the network keys (`model`, `ema`, `optimizer`, ...; `discriminator`, `d_optimizer`, ...).
Everything stored is plain tensors, numbers, strings and lists, so loading uses
`torch.load(weights_only=True)`: no arbitrary unpickling.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from restorekit.atomic import atomic_write
from restorekit.errors import RestorekitError

FORMAT = "restorekit-checkpoint-1"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(out: Path) -> Path:
    return out / "checkpoints"


def checkpoint_path(out: Path, step: int) -> Path:
    return checkpoint_dir(out) / f"step_{step:08d}.pt"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints in OUT/checkpoints, oldest first."""
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1][1] if found else None


def save_checkpoint(state: dict, path: Path) -> Path:
    state = {"format": FORMAT, **state}
    return atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RestorekitError(f"{path}: no such checkpoint") from None
    except Exception as err:
        raise RestorekitError(f"{path}: cannot read the checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RestorekitError(f"{path}: not a restorekit training checkpoint")
    return state


def prune(out: Path, keep: int) -> None:
    """Delete all but the `keep` newest checkpoints (and temp files a killed run left behind)."""
    found = list_checkpoints(out)
    for _, path in found[: max(0, len(found) - max(1, keep))]:
        path.unlink(missing_ok=True)
    for tmp in checkpoint_dir(out).glob(".step_*.tmp"):
        tmp.unlink(missing_ok=True)


def rng_state(device: torch.device) -> dict:
    """Every RNG a training step may touch, as weights-only-loadable values."""
    legacy = np.random.get_state()
    py = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [legacy[0], torch.from_numpy(legacy[1].astype(np.int64)), int(legacy[2]), int(legacy[3]),
                  float(legacy[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
