"""What a run reports while it trains: log.jsonl, TensorBoard scalars, a rich progress bar (rank 0 only).

log.jsonl has one JSON object per logged step, always with `step` and `loss` (the global batch's loss at
that step), plus lr, throughput, and validation/strategy fields on the steps that have them. On resume
the lines after the checkpoint's step are dropped, so the file reads as if the run never stopped.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from restorekit.atomic import write_bytes


class JsonlLog:
    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            kept = [line for line in path.read_text().splitlines() if _step_of(line) is not None
                    and _step_of(line) <= resume_step]
            write_bytes(path, ("\n".join(kept) + "\n" if kept else "").encode())
        self._handle = open(path, "a")

    def write(self, record: dict) -> None:
        self._handle.write(json.dumps(_finite(record)) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _finite(value):
    """JSON has no inf/nan: write them as strings so every line stays parseable."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class TensorBoard:
    """Scalars under OUT/tensorboard; silently absent when the tensorboard package is missing."""

    def __init__(self, folder: Path, enabled: bool, purge_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # pragma: no cover - tensorboard is a declared dependency
            return
        self.writer = SummaryWriter(str(folder), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress:
    """rich progress bar with loss, PSNR, it/s and ETA; a no-op when disabled or not on a terminal."""

    def __init__(self, total: int, start: int, mode: str = "auto", description: str = "train"):
        self.bar = None
        enabled = mode == "on" or (mode == "auto" and sys.stderr.isatty())
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("PSNR {task.fields[psnr]}"),
            TextColumn("{task.fields[speed]} it/s"), TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task(description, total=total, completed=start, loss="-", psnr="-", speed="-")

    def update(self, step: int, loss: float | None = None, psnr: float | None = None,
               speed: float | None = None) -> None:
        if self.bar is None:
            return
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4g}"
        if psnr is not None:
            fields["psnr"] = f"{psnr:.2f}"
        if speed is not None:
            fields["speed"] = f"{speed:.1f}"
        self.bar.update(self.task, completed=step, **fields)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
