"""Training engine acceptance: reproducible, resumable after SIGKILL, 1 vs 2 processes agree, configs fail early."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from restorekit.cli import main
from restorekit.train import load_config, run
from restorekit.zoo import load_model

REPO = Path(__file__).resolve().parent.parent


def tiny_config(**changes) -> dict:
    """A seconds-long run: 3-layer DnCNN, synthetic 64 px images, deterministic, no workers."""
    cfg = {
        "name": "test", "seed": 0, "task": "denoise", "device": "cpu", "deterministic": True, "threads": 1,
        "model": {"type": "dncnn", "args": {"in_channels": 1, "depth": 3, "features": 8}},
        "data": {
            "train": {"source": "synthetic", "count": 6, "size": 64, "channels": 1, "patch": 24,
                      "levels": ["noise:sigma=5..40"], "workers": 0},
            "val": {"source": "synthetic", "count": 2, "size": 48, "crop": None, "levels": ["noise:sigma=25"]},
        },
        "train": {"steps": 30, "batch_size": 8, "loss": "l2", "optimizer": {"lr": 2.0e-3}, "log_every": 1,
                  "checkpoint_every": 10, "ema_decay": 0.9,
                  "scheduler": {"type": "multistep", "milestones": [15], "gamma": 0.5}},
        "logging": {"tensorboard": False, "progress": "off"},
    }
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return cfg


def write_config(folder: Path, cfg: dict, name: str = "cfg.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def cli(*args, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "restorekit", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, **kwargs)


def test_same_config_and_seed_give_identical_loss_curves(tmp_path):
    path = write_config(tmp_path, tiny_config())
    for name in ("a", "b"):
        assert main(["train", str(path), "--out", str(tmp_path / name), "--progress", "off"]) == 0
    a, b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["step"] for r in a] == list(range(1, 31))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    weights_a, weights_b = load_file(tmp_path / "a" / "final.safetensors"), load_file(tmp_path / "b" / "final.safetensors")
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    # A different seed is a different run.
    assert main(["train", str(path), "--out", str(tmp_path / "c"), "--set", "seed=1", "--progress", "off"]) == 0
    assert [r["loss"] for r in read_log(tmp_path / "c")] != [r["loss"] for r in a]


def test_outputs_follow_the_contract_and_the_model_reloads(tmp_path):
    path = write_config(tmp_path, tiny_config())
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--set", "train.steps=12", "--progress", "off"]) == 0
    log = read_log(out)
    assert len(log) == 12 and all({"step", "loss"} <= set(r) for r in log)
    assert "val_psnr" in log[-1] and log[-1]["val_psnr"]["noise:sigma=25"] > 15
    assert (out / "checkpoints").is_dir() and list((out / "checkpoints").glob("step_*.pt"))
    card = json.loads((out / "final.json").read_text())
    assert card["architecture"] == "dncnn" and card["arguments"] == {"in_channels": 1, "depth": 3, "features": 8}
    assert card["training"]["steps"] == 12 and card["training"]["recipe"] == "supervised" and "levels" not in card
    model = load_model(str(out / "final.safetensors"))
    module = getattr(model, "module", model)  # a zoo `Model` (module + info), or the bare module
    saved = load_file(out / "final.safetensors")
    assert all(torch.equal(module.state_dict()[k], saved[k]) for k in saved)
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["train"]["steps"] == 12 and resolved["train"]["optimizer"]["betas"] == [0.9, 0.999]


def test_sigkill_then_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    steps, every = 240, 15
    cfg = tiny_config(**{"train.steps": steps, "train.checkpoint_every": every, "train.log_every": 10,
                         "data.val.every": 0, "train.keep_checkpoints": 3,
                         "train.scheduler": {"type": "cosine", "eta_min": 1e-5, "warmup_steps": 5}})
    path = write_config(tmp_path, cfg)
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert cli("train", str(path), "--out", str(full)).returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "restorekit", "train", str(path), "--out", str(killed)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / f"step_{2 * every:08d}.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "final.safetensors").exists(), "the run finished before the kill; make it longer"
    logged = read_log(killed)
    assert logged and logged[-1]["step"] < steps

    done = cli("train", str(path), "--out", str(killed), "--resume")
    assert done.returncode == 0, done.stderr
    a, b = load_file(full / "final.safetensors"), load_file(killed / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The log reads as if the run never stopped: same steps, same losses.
    assert [(r["step"], r["loss"]) for r in read_log(killed)] == [(r["step"], r["loss"]) for r in read_log(full)]


def test_resume_restores_on_demand_shares_and_uncertainty_weights(tmp_path):
    """Strategy state lives in the checkpoint: a resumed on-demand/uncertainty run matches an uninterrupted one."""
    for strategy in ("on_demand", "uncertainty"):
        cfg = tiny_config(**{
            "train.steps": 24, "train.checkpoint_every": 12, "strategy": {"type": strategy, "epoch_steps": 6},
            "data.train.levels": ["noise:sigma=5", "noise:sigma=45"],
            "data.val.levels": ["noise:sigma=5", "noise:sigma=45"]})
        path = write_config(tmp_path / strategy, cfg)
        full, part = tmp_path / strategy / "full", tmp_path / strategy / "part"
        assert main(["train", str(path), "--out", str(full)]) == 0
        assert main(["train", str(path), "--out", str(part), "--set", "train.steps=12"]) == 0
        # Continue the 12-step run's checkpoint as a 24-step run: same model section, more steps.
        assert main(["train", str(path), "--out", str(part), "--resume"]) == 0
        a, b = load_file(full / "final.safetensors"), load_file(part / "final.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), strategy


def test_two_processes_reach_the_loss_of_one_with_the_same_global_batch(tmp_path):
    cfg = tiny_config(**{"train.steps": 20, "train.checkpoint_every": 0, "deterministic": False, "threads": None,
                         "train.ema_decay": 0.0})
    path = write_config(tmp_path, cfg)
    one, two = tmp_path / "one", tmp_path / "two"
    done = cli("train", str(path), "--out", str(one))
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "restorekit", "train", str(path), "--out", str(two)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=240)
    assert launched.returncode == 0, launched.stderr[-3000:]
    a, b = read_log(one), read_log(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 21))
    assert b[-1]["loss"] == pytest.approx(a[-1]["loss"], abs=1e-4)
    assert b[0]["loss"] == pytest.approx(a[0]["loss"], abs=1e-6)  # same samples at step 1
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b, strict=True)) < 1e-4


# --------------------------------------------------------------------------- bad configs fail at start-up


BAD_CONFIGS = {
    "unknown key": ({"train.stesp": 5}, "unknown key 'train.stesp'"),
    "wrong type": ({"train.batch_size": "big"}, "train.batch_size: expected an integer"),
    "wrong type in a list": ({"train.scheduler": {"milestones": [10, "x"]}}, "train.scheduler.milestones[1]"),
    "missing dataset dir": ({"data.train": {"source": "folder", "folder": "/no/such/dir", "levels": ["noise:sigma=5"]}},
                            "data.train.folder"),
    "spec error": ({"data.train.levels": ["noise:sigma=5", "nosie:sigma=3"]}, "data.train.levels[1]"),
    "spec level out of range": ({"data.train.levels": ["noise:sigma=-4"]}, "data.train.levels[0]"),
    "unknown model": ({"model": {"type": "dncnnn"}}, "model.type"),
    "bad model args": ({"model": {"type": "dncnn", "args": {"layers": 3}}}, "model.args"),
    "freeze pattern matches nothing": ({"model.freeze": ["encoder.*"]}, "model.freeze"),
    "patch larger than images": ({"data.train.patch": 200}, "data.train.patch"),
    "amp on cpu": ({"train.amp": "fp16"}, "train.amp"),
    "bad strategy": ({"strategy": {"type": "greedy"}}, "strategy.type"),
    "mbn cycle length": ({"strategy": {"type": "mbn_cycle", "cycle": [1, 3]}}, "strategy.cycle"),
    "bad loss": ({"train.loss": "l3"}, "train.loss"),
    "strength on an unmodulated model": ({"model.strength": 0.5}, "model.strength"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configs_fail_before_training_naming_file_and_key(tmp_path, case, capsys):
    changes, expected = BAD_CONFIGS[case]
    path = write_config(tmp_path, tiny_config(**changes), name="experiment.yaml")
    out = tmp_path / "out"
    assert main(["train", str(path), "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("restorekit: error: ") and str(path) in lines[0] and expected in lines[0], lines[0]
    assert not out.exists()  # nothing was trained or written


def test_a_bad_config_is_one_line_on_the_command_line(tmp_path):
    path = write_config(tmp_path, tiny_config(**{"data.train.levels": ["blur:width=oops"]}), name="experiment.yaml")
    done = cli("train", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: data.train.levels[0]" in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


def test_bad_set_override_names_the_override(tmp_path):
    path = write_config(tmp_path, tiny_config())
    with pytest.raises(Exception, match=r"--set train.steps=many.*train.steps: expected an integer"):
        load_config(path, ["train.steps=many"])
    with pytest.raises(Exception, match=r"--set trian.steps=3.*unknown key 'trian'.*did you mean train"):
        load_config(path, ["trian.steps=3"])
    cfg = load_config(path, ["train.steps=7", "seed=5", "train.optimizer.lr=1e-3"])
    assert (cfg.train.steps, cfg.seed, cfg.train.optimizer.lr) == (7, 5, 1e-3)


def test_tiny_config_learns_to_denoise(tmp_path):
    """The contract config, shortened: after 60 steps it beats the noisy input by several dB at sigma 25."""
    out = tmp_path / "tiny"
    assert main(["train", str(REPO / "configs/tiny/denoise.yaml"), "--out", str(out), "--progress", "off",
                 "--set", "train.steps=60", "--set", "data.train.workers=0", "--set", "logging.tensorboard=false",
                 "--set", "threads=1"]) == 0
    trained = read_log(out)[-1]["val_psnr"]["noise:sigma=25"]
    from restorekit import evaluation, metrics
    from restorekit.data.sources import center_crop, load_skimage, to_tensor

    images = load_skimage(["rocket", "clock"], channels=1)  # the config's validation images
    setup = evaluation.default_setup("denoise", degrade="noise:sigma=25", seed=0, seed_mode="name")
    noisy = []
    for name, array in zip(images.names, images.clean, strict=True):
        degraded, target = evaluation.make_input(to_tensor(center_crop(array, 128)), name, setup)
        noisy.append(metrics.psnr_batch(degraded.clamp(0, 1), target, setup.protocol))
    baseline = float(torch.stack(noisy).mean())
    assert 19 < baseline < 22  # sigma 25 on [0, 255]: about 20.2 dB
    assert trained > baseline + 4


def test_tiny_config_is_complete_and_valid():
    """configs/tiny/denoise.yaml lists every key of the schema (every value visible; the keys of a stage,
    `stages[].KEY`, only in staged configs) and validates."""
    from restorekit.train.config import iter_keys

    raw = yaml.safe_load((REPO / "configs/tiny/denoise.yaml").read_text())
    for dotted, _ in iter_keys():
        if "[]" in dotted:
            continue
        node = raw
        for part in dotted.split("."):
            assert isinstance(node, dict) and part in node, f"configs/tiny/denoise.yaml lacks {dotted}"
            node = node[part]
    cfg = load_config(REPO / "configs/tiny/denoise.yaml")
    assert cfg.model.type == "dncnn" and cfg.model.args["depth"] == 5 and cfg.model.args["features"] == 16


def test_freezing_by_pattern_keeps_frozen_weights(tmp_path):
    cfg = tiny_config(**{"model.freeze": ["model.0.*"], "train.steps": 5, "train.ema_decay": 0.0})
    out = tmp_path / "run"
    run(load_config(write_config(tmp_path, cfg)), out)
    from restorekit.models import create_model

    torch.manual_seed(0)
    initial = create_model("dncnn", in_channels=1, depth=3, features=8).state_dict()
    final = load_file(out / "final.safetensors")
    assert torch.equal(final["model.0.weight"], initial["model.0.weight"])
    assert not torch.equal(final["model.2.weight"], initial["model.2.weight"])
