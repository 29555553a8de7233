"""The one way restorekit writes a file: a temp file beside the target, fsync, rename over it.

A crash, a kill or a full disk therefore leaves either the old file or the complete new one, never half
of one; the temp file is removed on any error. Images (`io.write_image`), JSON reports, model cards,
weights and checkpoints all go through `atomic_write`.

Only SIGKILL (or a power cut) can strand a temp file. Its name says who wrote it,
`.NAME.rk-HOST-PID-RANDOM.tmp` (HOST: a short hash of the host name), so `remove_stale_temps` can delete
exactly the temps whose writer is gone without touching another process's write in progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

# `.NAME.rk-HOST-PID-RANDOM.tmp`: hidden (list_images skips dot-files), attributable, ours.
_TEMP_NAME = re.compile(r"^\..+\.rk-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.tmp$")


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=".tmp")
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


def _host_id() -> str:
    """8 hex digits naming this machine (container), so a shared folder's temps say whose pid they carry."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _temp_prefix(name: str) -> str:
    return f".{name}.rk-{_host_id()}-{os.getpid()}-"


def check_writable(folder: str | Path) -> Path:
    """Create `folder` and write (then remove) a probe file in it, the way `atomic_write` would.

    Raises OSError naming the problem: a file in the way, no permission, a read-only filesystem. Lets a
    batch refuse a bad output folder before it computes anything rather than after every image.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=_temp_prefix("write-probe"), suffix=".tmp")
    os.close(fd)
    os.unlink(probe)
    return folder


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete our temp files under `folder` (recursively) whose writer died before renaming them.

    A temp is stale when it was written on this host and its pid is gone, a zombie, or a newer process
    that reused the pid. Temps from other hosts (a shared filesystem) and from live writers are kept;
    so are files that do not carry our temp name. Returns the removed paths.
    """
    removed: list[Path] = []
    host = _host_id()
    for root, _dirs, files in os.walk(folder):
        for name in files:
            match = _TEMP_NAME.match(name)
            if match is None or match["host"] != host:
                continue
            temp = Path(root, name)
            with contextlib.suppress(FileNotFoundError):  # its writer may have just renamed it
                if not _writer_alive(int(match["pid"]), temp.stat().st_mtime):
                    temp.unlink()
                    removed.append(temp)
    return removed


def _writer_alive(pid: int, written_at: float) -> bool:
    """Is process `pid` (on this host) still the one that last wrote a file at time `written_at`?"""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    fields = _proc_stat(pid)
    if fields is None:  # no /proc (not Linux): an existing pid counts as the writer
        return True
    if fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    boot = _boot_time()
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK") if boot is not None else 0.0
    return started <= written_at + 1.0  # a later start: the pid was reused (btime has 1 s resolution)


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state field on (the command name before it may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _boot_time() -> float | None:
    with contextlib.suppress(OSError, StopIteration, IndexError, ValueError):
        with open("/proc/stat") as handle:
            return float(next(line.split()[1] for line in handle if line.startswith("btime")))
    return None


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
