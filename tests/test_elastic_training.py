"""Fault-tolerant training (issue 13, build item "fault-tolerant training"; finding 10 for file modes):
torchrun restarts a killed worker and the job resumes from the last good checkpoint, finishing with the
weights of an uninterrupted run; checkpoints carry a checksum, and a corrupt latest one falls back to the
previous one with a warning; every file training writes gets the umask's mode, like images."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file
from test_train import REPO, read_log, tiny_config, write_config

from restorekit.cli import main
from restorekit.errors import RestorekitError
from restorekit.train import load_config, run
from restorekit.train.checkpoint import (
    checkpoint_path,
    checksum_path,
    list_checkpoints,
    load_checkpoint,
    load_latest_good,
    prune,
    save_checkpoint,
)


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(config, out) of an uninterrupted 6-step run with checkpoints at steps 2, 4 and 6."""
    folder = tmp_path_factory.mktemp("finished")
    path = write_config(folder, tiny_config(**{"train.steps": 6, "train.checkpoint_every": 2,
                                               "train.keep_checkpoints": 3, "data.val.every": 0}))
    run(load_config(path), folder / "out")
    return path, folder / "out"


def killed_copy(finished: tuple[Path, Path], tmp_path: Path) -> Path:
    """The run as a kill after its last checkpoint leaves it: every checkpoint, no final weights."""
    out = tmp_path / "out"
    shutil.copytree(finished[1], out)
    (out / "final.safetensors").unlink()
    (out / "final.json").unlink()
    return out


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def drop_the_checksum(path: Path) -> None:
    checksum_path(path).unlink()


def garbage_with_a_matching_checksum(path: Path) -> None:
    garbage = b"not a torch file" * 64
    path.write_bytes(garbage)
    checksum_path(path).write_text(f"{hashlib.sha256(garbage).hexdigest()}  {path.name}\n")


CORRUPTIONS = {
    "a flipped byte": (flip_a_byte, "checksum mismatch"),
    "truncated": (truncate, "checksum mismatch"),
    "checksum file missing": (drop_the_checksum, "no checksum"),
    "unreadable despite its checksum": (garbage_with_a_matching_checksum, "cannot read the checkpoint"),
}


# --------------------------------------------------------------------------- checksums and fallback


def test_the_checksum_catches_a_flipped_weight_that_torch_load_would_accept(finished, tmp_path):
    """issue 13, build item: each checkpoint carries a checksum, verified on load."""
    source = list_checkpoints(finished[1])[-1][1]
    path = tmp_path / source.name
    shutil.copy(source, path)
    shutil.copy(checksum_path(source), checksum_path(path))
    payload = path.read_bytes()
    # The sidecar is `sha256sum` format: `sha256sum -c` checks a checkpoints folder by hand.
    assert checksum_path(path).read_text() == f"{hashlib.sha256(payload).hexdigest()}  {path.name}\n"
    weight = next(iter(load_checkpoint(path)["model"].values()))
    at = payload.find(weight.numpy().tobytes())
    assert at > 0
    damaged = bytearray(payload)
    damaged[at] ^= 0x01
    path.write_bytes(bytes(damaged))
    plain = torch.load(path, weights_only=True)  # torch alone loads the damaged weight without complaint
    assert not torch.equal(next(iter(plain["model"].values())), weight)
    with pytest.raises(RestorekitError, match=rf"^{re.escape(str(path))}: checksum mismatch"):
        load_checkpoint(path)


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(finished, tmp_path, capsys, corruption):
    """issue 13, build item: a corrupted latest checkpoint is skipped with a one-line warning naming it, the
    previous one is used, and the resumed run still ends with the uninterrupted run's weights."""
    config, full = finished
    out = killed_copy(finished, tmp_path)
    damage, reason = CORRUPTIONS[corruption]
    latest = list_checkpoints(out)[-1][1]
    damage(latest)
    assert main(["train", str(config), "--out", str(out), "--resume", "--progress", "off"]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"restorekit: warning: skipping {latest}: {reason}"), warnings
    assert f"resuming from {checkpoint_path(out, 4)} (step 4)" in captured.out
    assert same_weights(full / "final.safetensors", out / "final.safetensors")
    assert [(r["step"], r["loss"]) for r in read_log(out)] == [(r["step"], r["loss"]) for r in read_log(full)]


def test_no_usable_checkpoint_is_one_clear_error(finished, tmp_path, capsys):
    """issue 13, build item: if no checkpoint is good, one clear error (after a warning per checkpoint)."""
    config, _ = finished
    out = killed_copy(finished, tmp_path)
    for _, path in list_checkpoints(out):
        flip_a_byte(path)
    assert main(["train", str(config), "--out", str(out), "--resume"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ")[1] for line in lines] == ["warning", "warning", "warning", "error"], lines
    assert lines[-1].startswith(f"restorekit: error: {out / 'checkpoints'}: none of its 3 checkpoints is usable")
    assert not (out / "final.safetensors").exists()


def test_an_explicitly_named_checkpoint_is_verified_too(finished, tmp_path, capsys):
    config, _ = finished
    out = killed_copy(finished, tmp_path)
    named = checkpoint_path(out, 4)
    truncate(named)
    assert main(["train", str(config), "--out", str(out), "--resume", str(named)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"restorekit: error: {named}: checksum mismatch"), lines


def test_pruning_never_deletes_the_last_good_checkpoint(tmp_path, capsys):
    """issue 13, build item: with keep_checkpoints 1, a corrupt newest checkpoint must not cost the good one."""
    save_checkpoint({"step": 1}, checkpoint_path(tmp_path, 1))
    prune(tmp_path, keep=1)
    save_checkpoint({"step": 2}, checkpoint_path(tmp_path, 2))
    flip_a_byte(checkpoint_path(tmp_path, 2))
    (tmp_path / "checkpoints" / ".step_00000003.pt.x1y2.tmp").write_bytes(b"half")  # a write a kill cut short
    prune(tmp_path, keep=1)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [1, 2]
    state, path = load_latest_good(tmp_path)
    assert (state["step"], path) == (1, checkpoint_path(tmp_path, 1))
    assert "skipping" in capsys.readouterr().err
    save_checkpoint({"step": 3}, checkpoint_path(tmp_path, 3))
    prune(tmp_path, keep=1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000003.pt",
                                                                          "step_00000003.pt.sha256"]


# --------------------------------------------------------------------------- elastic restarts


def test_a_torchrun_restart_resumes_without_the_resume_flag(finished, tmp_path, monkeypatch, capsys):
    """issue 13, build item: torchrun re-executes the original command line (no --resume); a restart
    (TORCHELASTIC_RESTART_COUNT > 0) resumes from the newest good checkpoint of the same config."""
    config, full = finished
    out = killed_copy(finished, tmp_path)
    checkpoint_path(out, 6).unlink()
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert main(["train", str(config), "--out", str(out), "--progress", "off"]) == 0
    assert f"torchrun restart 1: resuming from {checkpoint_path(out, 4)} (step 4)" in capsys.readouterr().out
    assert same_weights(full / "final.safetensors", out / "final.safetensors")
    # A checkpoint of another config predates this job: the command line asked for a fresh run.
    assert main(["train", str(config), "--out", str(out), "--progress", "off", "--set", "seed=1"]) == 0
    assert "is from another config; starting from step 0" in capsys.readouterr().out
    assert [r["step"] for r in read_log(out)] == [1, 2, 3, 4, 5, 6]


ELASTIC_STEPS, ELASTIC_EVERY = 40, 10
TORCHRUN_ENV = {"OMP_NUM_THREADS": "1"}  # torchrun's shared store as users get it (restorekit.distributed.attempt_store)


def torchrun(config: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *options,
            "-m", "restorekit", "train", str(config), "--out", str(out), "--progress", "off"]


def test_a_worker_killed_mid_training_is_restarted_and_ends_with_the_uninterrupted_weights(tmp_path):
    """issue 13, build item: `torchrun --max-restarts=1`, SIGKILL rank 0 (the writer) after the first
    checkpoint: torchrun restarts the workers, they resume from the last checkpoint, the job exits 0 with
    weights equal (torch.equal) to an uninterrupted 2-process run's (CPU, deterministic: true)."""
    config = write_config(tmp_path, tiny_config(**{
        "train.steps": ELASTIC_STEPS, "train.checkpoint_every": ELASTIC_EVERY, "train.log_every": 1,
        "data.val.every": 0, "data.train.patch": 48}))  # 48 px patches: steps slow enough to kill in between
    env = {**os.environ, **TORCHRUN_ENV}
    full, killed = tmp_path / "full", tmp_path / "killed"
    done = subprocess.run(torchrun(config, full), capture_output=True, text=True, cwd=REPO, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    transcript = tmp_path / "torchrun.log"
    with open(transcript, "w") as sink:  # a file, not a pipe: nobody reads a pipe while we wait
        agent = subprocess.Popen(torchrun(config, killed, "--max-restarts=1"), stdout=sink, stderr=subprocess.STDOUT,
                                 cwd=REPO, env=env)
        first = checksum_path(checkpoint_path(killed, ELASTIC_EVERY))
        deadline = time.monotonic() + 180
        while not first.exists() and agent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert agent.poll() is None, "torchrun ended before the first checkpoint: " + transcript.read_text()[-3000:]
        writer = next(w for w in psutil.Process(agent.pid).children() if w.environ().get("RANK") == "0")
        writer.send_signal(signal.SIGKILL)
        assert not (killed / "final.safetensors").exists(), "the run finished before the kill; make it longer"
        agent.wait(timeout=240)
    log = transcript.read_text()
    assert agent.returncode == 0, log[-3000:]
    resumed = re.search(r"torchrun restart 1: resuming from \S+ \(step (\d+)\)", log)
    assert resumed and ELASTIC_EVERY <= int(resumed[1]) < ELASTIC_STEPS, log[-3000:]
    assert same_weights(full / "final.safetensors", killed / "final.safetensors")
    assert [(r["step"], r["loss"]) for r in read_log(killed)] == [(r["step"], r["loss"]) for r in read_log(full)]
    assert not list((killed / "checkpoints").glob(".*.tmp"))


# --------------------------------------------------------------------------- finding 10: file modes


def test_every_file_training_writes_gets_the_umask_mode(tmp_path):
    """issue 13, finding 10: under umask 022 training outputs are 0644 (folders 0755), as images are, on a
    fresh run and after a resume rewrites the log, the config copy and the final files."""
    config = write_config(tmp_path, tiny_config(**{"train.steps": 4, "train.checkpoint_every": 2,
                                                   "logging.tensorboard": True}))
    out = tmp_path / "out"
    previous = os.umask(0o022)
    try:
        run(load_config(config), out)
        run(load_config(config, ["train.steps=6"]), out, resume="latest")
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert {"log.jsonl", "config.yaml", "final.json", "final.safetensors"} <= set(modes)
    assert any(name.startswith("tensorboard/events.") for name in modes)
    assert any(name.endswith(".pt.sha256") for name in modes)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o755 if (out / name).is_dir() else 0o644)}
    assert not wrong
