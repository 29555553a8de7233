"""`restorekit restore` under torchrun: files sharded over processes, each exactly once, resumable after a kill.

Issue 13: finding 2 (two ranks used to process every file and race), finding 11 (one thread per process,
as torchrun sets, vs the default thread count) and the build item "distributed batch inference".
The launches are real `torch.distributed.run` processes on gloo (CPU), as a user would type them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from PIL import Image

from restorekit import io
from restorekit.api import Restorer
from restorekit.cli import main

REPO = Path(__file__).resolve().parent.parent

# Finding 11: the bound on what the thread count changes in a real model's output (see the threads test;
# measured on 512x512: 1 of 786,432 values at 8 bits, 0.10% at 16 bits, never more than 1 level).
MAX_GREY_LEVELS_APART = 1
MAX_FRACTION_DIFFERENT = {8: 1e-3, 16: 1e-2}


def synthesize(folder: Path, count: int, size: int) -> list[str]:
    """`count` random RGB PNGs (seeded), named so that sorting is the creation order."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    return [f"img{i:02d}.png" for i in range(count)]


def torchrun_command(*restore_args: str, console_script: bool = False) -> list[str]:
    """Two CPU processes; `python -m restorekit`, or the README's console-script form."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    entry = ["--no-python", str(Path(sys.executable).parent / "restorekit")] if console_script else ["-m", "restorekit"]
    return [*launcher, *entry, "restore", *restore_args, "--device", "cpu"]


def torchrun(*restore_args: str, console_script: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_command(*restore_args, console_script=console_script), capture_output=True,
                          text=True, cwd=REPO, env=_env(), timeout=180)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # what torchrun sets anyway; said here to silence its warning


def our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("restorekit:")]


def processed_by_rank(report: Path) -> dict[str, int]:
    """input -> the rank that restored it, asserting no input is listed twice."""
    files = json.loads(report.read_text())["files"]
    counts = Counter(f["input"] for f in files)
    assert max(counts.values()) == 1, [name for name, n in counts.items() if n > 1]
    return {f["input"]: f["rank"] for f in files if f["status"] == "restored"}


def grey_levels_apart(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """Largest difference in grey levels and the fraction of values that differ at all."""
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return int(diff.max()), float((diff > 0).mean())


def test_two_processes_restore_each_file_once_like_one_process(tiny_zoo, tmp_path):
    """Issue 13, finding 2 and the build item: 50 files over 2 ranks, no duplicates, no misses; rerun skips all."""
    names = synthesize(tmp_path / "in", 50, 32)
    out, report = tmp_path / "out", tmp_path / "report.json"
    model = ["--model", "tiny-adafm", "--level", "30"]
    common = [str(tmp_path / "in"), "-o", str(out), *model]

    first = torchrun(*common, "--json", str(report))
    assert first.returncode == 0, first.stderr[-3000:]
    assert our_lines(first.stderr) == [f"restorekit: 50 restored, 0 failed -> {out} (2 processes)"]
    assert sorted(p.name for p in out.iterdir()) == names  # every output once, no temp left behind
    ranks = processed_by_rank(report)
    assert len(ranks) == 50 and Counter(ranks.values()) == {0: 25, 1: 25}
    payload = json.loads(report.read_text())
    assert payload["world_size"] == 2 and payload["summary"] == {"restored": 50, "skipped": 0, "failed": 0}
    assert oct(report.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # issue 13, finding 10: not 0600

    # Issue 13, finding 11: the same pixels as one process with the default thread count, within the bound.
    single = tmp_path / "single"
    assert main(["restore", str(tmp_path / "in"), "-o", str(single), *model, "--device", "cpu"]) == 0
    for name in names:
        apart, fraction = grey_levels_apart(np.asarray(Image.open(out / name)), np.asarray(Image.open(single / name)))
        assert apart <= MAX_GREY_LEVELS_APART and fraction < MAX_FRACTION_DIFFERENT[8], name

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = torchrun(*common, "--json", str(report))
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(report.read_text())["summary"] == {"restored": 0, "skipped": 50, "failed": 0}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    # --overwrite: every file computed exactly once (it used to be twice), launched as the README shows it;
    # a bad file is named once (by the rank that read it) and the whole job exits 1.
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    replaced = torchrun(*common, "--overwrite", "--json", str(report), console_script=True)
    assert replaced.returncode != 0 and "exitcode: 1" in replaced.stderr
    lines = our_lines(replaced.stderr)
    assert sum("broken.png" in line for line in lines) == 1, lines
    assert lines[-1] == f"restorekit: 50 restored, 1 failed -> {out} (2 processes)"
    ranks = processed_by_rank(report)
    assert len(ranks) == 50 and Counter(ranks.values()) == {0: 25, 1: 25}


def test_a_killed_rank_leaves_only_whole_outputs_and_a_rerun_completes_the_set(tiny_zoo, tmp_path):
    """Build item: SIGKILL one rank mid-way; finished outputs are complete, the rerun does the rest."""
    names = synthesize(tmp_path / "in", 50, 128)
    out, report = tmp_path / "out", tmp_path / "report.json"
    common = [str(tmp_path / "in"), "-o", str(out), "--model", "tiny-adafm", "--level", "30", "--ensemble"]
    log = (tmp_path / "killed.log").open("w")  # a file, not a pipe nobody drains while we wait
    launcher = psutil.Popen(torchrun_command(*common), stdout=log, stderr=log, cwd=REPO, env=_env())
    rank1_share = {out / name for name in names[1::2]}
    deadline = time.monotonic() + 90  # safety limit, not a speed test
    while sum(p.exists() for p in rank1_share) < 2:
        assert launcher.poll() is None and time.monotonic() < deadline, "rank 1 never got going"
        time.sleep(0.02)
    worker = next(p for p in launcher.children(recursive=True) if p.environ().get("RANK") == "1")
    worker.send_signal(signal.SIGKILL)
    assert launcher.wait(timeout=60) != 0
    log.close()

    finished = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert 0 < len(finished) < 50
    for name in finished:  # atomic writes: whatever exists reads back whole
        assert io.read_image(out / name)[0].shape == (3, 128, 128), name

    rerun = torchrun(*common, "--json", str(report))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == names  # complete, and the killed ranks' temps are gone
    payload = json.loads(report.read_text())
    assert payload["summary"] == {"restored": 50 - len(finished), "skipped": len(finished), "failed": 0}
    assert {Path(f["output"]).name for f in payload["files"] if f["status"] == "skipped"} == set(finished)


def test_one_thread_per_process_changes_a_real_model_by_at_most_one_grey_level(monkeypatch):
    """Issue 13, finding 11: the documented bound. Thread count only regroups float sums (a few ulp),
    which moves a value across a rounding boundary now and then."""
    monkeypatch.delenv("RESTOREKIT_BUNDLED", raising=False)
    from skimage import data

    rng = np.random.default_rng(0)
    clean = data.astronaut()[:256, :256].astype(np.float32) / 255
    noisy = np.clip(clean + rng.normal(0, 30 / 255, clean.shape).astype(np.float32), 0, 1)
    image = torch.from_numpy(noisy).permute(2, 0, 1).contiguous()
    restorer = Restorer("adafm_denoise_s15_s75", device="cpu")
    threads = torch.get_num_threads()
    try:
        outputs = {}
        for count in (1, max(4, os.cpu_count() or 1)):
            torch.set_num_threads(count)
            outputs[count] = restorer.restore(image, level=30)
    finally:
        torch.set_num_threads(threads)
    one, many = outputs.values()
    assert (one - many).abs().max() < 1e-5  # float32 rounding only: under one level even at 16 bits
    for bits, fraction_allowed in MAX_FRACTION_DIFFERENT.items():
        levels = 2**bits - 1
        apart, fraction = grey_levels_apart(*((t.clamp(0, 1) * levels).round().numpy() for t in (one, many)))
        assert apart <= MAX_GREY_LEVELS_APART and fraction < fraction_allowed, bits


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


@pytest.fixture(autouse=True)
def _no_stray_workers():
    """A failed assertion mid-launch must not leave torchrun workers running into the next test."""
    yield
    for child in psutil.Process().children(recursive=True):
        child.kill()
