"""Checkpoints that survive a SIGKILL, detect corruption, and resume bit-exactly.

A checkpoint holds the model, EMA, optimizer, scheduler, loss scaler, level-strategy and uncertainty
states, every rank's RNG states, the data position (the next step: the sampler is a pure function of
seed and step) and, for staged runs, the stage. The recipe decides the network keys (`model`, `ema`,
`optimizer`, ...; `discriminator`, `d_optimizer`, ...). Everything stored is plain tensors, numbers,
strings and lists, so loading uses `torch.load(weights_only=True)`: no arbitrary unpickling.

Each `step_N.pt` has a sidecar `step_N.pt.sha256` in `sha256sum` format (so `sha256sum -c` checks a
folder by hand), holding the digest of the bytes that were serialised. Both go through
`restorekit.atomic.atomic_write` (temporary file, fsync, rename), the payload first: a crash leaves the old
pair, or a new payload without its sidecar (treated as unverified), never half of a file. Why a sidecar
rather than a header inside the file: the `.pt` stays a plain torch zip file that `torch.load` opens, and
the digest covers exactly the bytes torch reads. A checkpoint whose digest does not match (a flipped
byte, a truncated copy) or that does not load is skipped, with a warning, in favour of the previous one;
`prune` counts only checkpoints that verify, so it never deletes the last good one.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import sys
from pathlib import Path

import numpy as np
import torch

from restorekit.atomic import write_bytes
from restorekit.errors import RestorekitError

FORMAT = "restorekit-checkpoint-1"
_NAME = re.compile(r"^step_(\d+)\.pt$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
CHECKSUM_SUFFIX = ".sha256"


def checkpoint_dir(out: Path) -> Path:
    return out / "checkpoints"


def checkpoint_path(out: Path, step: int) -> Path:
    return checkpoint_dir(out) / f"step_{step:08d}.pt"


def checksum_path(path: Path) -> Path:
    """The sidecar holding `path`'s sha256: `step_N.pt.sha256`."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoint files in OUT/checkpoints, oldest first (verified only on load)."""
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1][1] if found else None


def save_checkpoint(state: dict, path: Path) -> Path:
    """Serialise once, write the payload, then its digest: a sidecar never vouches for a file not yet in place."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    payload = buffer.getbuffer()
    write_bytes(path, payload)
    write_bytes(checksum_path(path), f"{hashlib.sha256(payload).hexdigest()}  {path.name}\n".encode())
    return path


def checksum_problem(path: Path, digest: str) -> str | None:
    """Why `path`, whose bytes hash to `digest`, does not match its sidecar; None when it does."""
    sidecar = checksum_path(path)
    try:
        fields = sidecar.read_text().split()
    except FileNotFoundError:
        return (f"no checksum: {sidecar.name} is missing (the run stopped between writing the two, or an older "
                "restorekit wrote the checkpoint)")
    except (OSError, UnicodeDecodeError) as err:
        return f"cannot read its checksum file {sidecar.name} ({getattr(err, 'strerror', None) or err})"
    expected = fields[0] if fields else ""
    if not _DIGEST.match(expected):
        return f"its checksum file {sidecar.name} holds no sha256 digest"
    if digest != expected:
        return (f"checksum mismatch (sha256 {digest[:12]}..., {sidecar.name} says {expected[:12]}...): "
                "the file is corrupt or truncated")
    return None


def load_checkpoint(path: Path) -> dict:
    """Verify the digest, then deserialise with `torch.load(weights_only=True)` from the verified bytes."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise RestorekitError(f"{path}: no such checkpoint") from None
    except OSError as err:
        raise RestorekitError(f"{path}: cannot read the checkpoint ({err.strerror})") from None
    problem = checksum_problem(path, hashlib.sha256(payload).hexdigest())
    if problem:
        raise RestorekitError(f"{path}: {problem}")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure: a damaged file; torch's text runs to lines, keep one
        reason = (str(err).strip().splitlines() or [""])[0]
        raise RestorekitError(f"{path}: cannot read the checkpoint ({type(err).__name__}: {reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RestorekitError(f"{path}: not a restorekit training checkpoint")
    return state


def load_latest_good(out: Path) -> tuple[dict, Path] | None:
    """The newest checkpoint in OUT that verifies and loads, with one warning line for each newer one that
    does not. None when OUT has no checkpoint; RestorekitError when it has some but none is usable."""
    found = list_checkpoints(out)
    newest_problem = ""
    for _, path in reversed(found):
        try:
            return load_checkpoint(path), path
        except RestorekitError as err:
            newest_problem = newest_problem or str(err)
            print(f"restorekit: warning: skipping {err}", file=sys.stderr)
    if found:
        raise RestorekitError(f"{checkpoint_dir(out)}: none of its {len(found)} checkpoints is usable "
                              f"(newest: {newest_problem}); remove them or use another --out to start over")
    return None


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verifies(path: Path) -> bool:
    """Whether `path` is present and matches its sidecar (bytes only: no deserialisation)."""
    try:
        return checksum_problem(path, _file_sha256(path)) is None
    except OSError:
        return False


def prune(out: Path, keep: int) -> None:
    """Keep the `keep` newest checkpoints that verify, and any newer ones that do not (for a post-mortem);
    delete everything older, with sidecars, plus temp files a killed run left behind. Counting only
    verified checkpoints means the last good one is never deleted."""
    found = list_checkpoints(out)
    good, cut = 0, 0
    for index in range(len(found) - 1, -1, -1):
        if verifies(found[index][1]):
            good += 1
            if good >= max(1, keep):
                cut = index
                break
    for _, path in found[:cut]:
        _remove(path)
    _remove_debris(out)


def remove_all(out: Path) -> None:
    """A fresh run's clean slate: every checkpoint, sidecar and temp file in OUT/checkpoints."""
    for _, path in list_checkpoints(out):
        _remove(path)
    _remove_debris(out)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def _remove_debris(out: Path) -> None:
    """Temp files of a killed write, and sidecars whose checkpoint is gone (a kill inside `_remove`)."""
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return
    for tmp in folder.glob(".step_*.tmp"):
        tmp.unlink(missing_ok=True)
    for sidecar in folder.glob(f"step_*.pt{CHECKSUM_SUFFIX}"):
        if not sidecar.with_name(sidecar.name.removesuffix(CHECKSUM_SUFFIX)).exists():
            sidecar.unlink(missing_ok=True)


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
