"""The one way restorekit writes a file: a temp file beside the target, fsync, rename over it.

A crash, a kill or a full disk therefore leaves either the old file or the complete new one, never half
of one; the temp file is removed on any error. Images (`io.write_image`), JSON reports, model cards,
weights and checkpoints all go through `atomic_write`.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object], *, overwrite: bool = True,
                 mode: int | None = None) -> Path:
    """Call write(binary file object) on a temp file beside `path`, fsync, move it into place.

    overwrite=False never clobbers a file that appeared meanwhile (`os.link` fails atomically if the
    name exists): FileExistsError. mode: permission bits of the result; default the replaced file's,
    else what a plain `open()` gives under the umask (a bare temp file would stay 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)  # reopened by name: some writers (tifffile) need `handle.name` to be a path
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode if mode is not None else _final_mode(path))
        _commit(tmp, path, overwrite)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def _commit(tmp: str, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path}: already exists") from None
    except OSError:  # a filesystem without hard links
        if path.exists():
            raise FileExistsError(f"{path}: already exists") from None
        os.replace(tmp, path)


def _final_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask would race threads)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def write_json(path: str | Path, payload: object) -> Path:
    """JSON, indented, newline-terminated, written atomically."""
    return write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())
