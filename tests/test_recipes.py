"""Training recipes: staged == the separate runs it replaces (bit-exact), exact resume inside and between
stages, the adversarial recipe (two optimisers, resume), registered losses in configs, CPU bf16, and DDP
(torchrun, 2 gloo processes) for the adversarial and staged recipes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import REPO, read_log, tiny_config, write_config

from restorekit.errors import ConfigError
from restorekit.train import load_config, run, validate_config
from restorekit.train.checkpoint import list_checkpoints
from restorekit.train.losses import l1, register_loss, unregister_loss

# The AdaFM CPU recipe's two stage configs, shrunk to seconds: a tiny body on synthetic images.
SMALL_ADAFM = ["model.args.features=8", "model.args.blocks=1", "data.train.patch=24", "data.train.source=synthetic",
               "data.train.count=6", "data.train.size=64", "data.train.workers=0", "data.val.source=synthetic",
               "data.val.count=2", "data.val.size=48", "data.val.crop=null", "data.val.every=0", "device=cpu",
               "deterministic=true", "threads=1", "train.batch_size=4", "train.optimizer.lr=5e-4",
               "train.log_every=1", "train.checkpoint_every=3", "logging.tensorboard=false", "logging.progress='off'",
               "train.scheduler={type: cosine, milestones: [], gamma: 0.5, eta_min: 1.0e-5, warmup_steps: 0}"]
STAGE1, STAGE2 = 5, 4


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def staged(out: Path, *extra: str) -> None:
    cfg = load_config(REPO / "configs/adafm/denoise_staged_s15_s75.yaml",
                      [*SMALL_ADAFM, f"stages.0.steps={STAGE1}", f"stages.1.steps={STAGE2}", *extra])
    run(cfg, out)


def test_staged_adafm_equals_the_two_stage_configs_run_one_after_the_other(tmp_path):
    basic, adafm, one = tmp_path / "basic", tmp_path / "adafm", tmp_path / "staged"
    run(load_config(REPO / "configs/adafm/denoise_basic_s15.yaml", [*SMALL_ADAFM, f"train.steps={STAGE1}"]), basic)
    run(load_config(REPO / "configs/adafm/denoise_adafm_s15_s75.yaml",
                    [*SMALL_ADAFM, f"train.steps={STAGE2}", f"model.init={basic / 'final.safetensors'}"]), adafm)
    staged(one)
    assert same_weights(basic / "final.safetensors", one / "stages" / "basic.safetensors")
    assert same_weights(adafm / "final.safetensors", one / "final.safetensors")
    assert same_weights(one / "stages" / "adafm.safetensors", one / "final.safetensors")
    # The frozen base really stayed frozen, and the AdaFM layers moved.
    stage1, final = load_file(one / "stages" / "basic.safetensors"), load_file(one / "final.safetensors")
    assert all(torch.equal(stage1[k], final[k]) for k in stage1)
    assert any("adafm" in k for k in set(final) - set(stage1))
    log = read_log(one)
    assert [r["step"] for r in log] == list(range(1, STAGE1 + STAGE2 + 1))
    assert [r["stage"] for r in log] == ["basic"] * STAGE1 + ["adafm"] * STAGE2
    # Each stage's losses are the separate run's.
    assert [r["loss"] for r in log] == [r["loss"] for r in read_log(basic) + read_log(adafm)]
    card = __import__("json").loads((one / "final.json").read_text())
    assert card["arguments"]["adafm"] is True and card["training"]["steps"] == {"basic": STAGE1, "adafm": STAGE2}


@pytest.mark.parametrize("interrupted_at", [3, STAGE1, 6])  # inside stage 1, at its end, inside stage 2
def test_staged_resume_is_exact_inside_and_between_stages(tmp_path, interrupted_at):
    full, cut = tmp_path / "full", tmp_path / "cut"
    staged(full, "train.checkpoint_every=1", "train.keep_checkpoints=100")
    staged(cut, "train.checkpoint_every=1", "train.keep_checkpoints=100")
    # What a run killed right after the checkpoint of step `interrupted_at` leaves on disk.
    for step, path in list_checkpoints(cut):
        if step > interrupted_at:
            path.unlink()
    (cut / "final.safetensors").unlink()
    if interrupted_at < STAGE1 + STAGE2:
        (cut / "stages" / "adafm.safetensors").unlink()
    cfg = load_config(REPO / "configs/adafm/denoise_staged_s15_s75.yaml",
                      [*SMALL_ADAFM, f"stages.0.steps={STAGE1}", f"stages.1.steps={STAGE2}",
                       "train.checkpoint_every=1", "train.keep_checkpoints=100"])
    run(cfg, cut, resume="latest")
    assert same_weights(full / "final.safetensors", cut / "final.safetensors")
    assert [(r["step"], r["loss"]) for r in read_log(cut)] == [(r["step"], r["loss"]) for r in read_log(full)]


def adversarial_config(**changes) -> dict:
    return tiny_config(**{"recipe": "adversarial", "train.steps": 8, "train.checkpoint_every": 4,
                          "adversarial": {"weight": 0.05, "discriminator": {"features": 8, "depth": 2},
                                          "optimizer": {"lr": 1e-3},
                                          "scheduler": {"type": "multistep", "milestones": [4], "gamma": 0.5}},
                          **changes})


def test_adversarial_recipe_trains_two_networks_and_resumes_exactly(tmp_path):
    path = write_config(tmp_path, adversarial_config())
    full, part = tmp_path / "full", tmp_path / "part"
    run(load_config(path), full)
    log = read_log(full)
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["d_loss"]) and r["loss"] > r["pixel_loss"] for r in log)
    state = torch.load(list_checkpoints(full)[-1][1], weights_only=True)
    assert state["recipe"] == "adversarial" and state["discriminator"] and state["d_scheduler"]["last_epoch"] == 8
    assert state["d_optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-4)  # its own schedule
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-3)  # train.scheduler: milestone 15
    run(load_config(path), part)
    for step, ck in list_checkpoints(part):
        if step > 4:
            ck.unlink()
    run(load_config(path), part, resume="latest")
    assert same_weights(full / "final.safetensors", part / "final.safetensors")
    assert [r["d_loss"] for r in read_log(part)] == [r["d_loss"] for r in log]


def test_a_registered_loss_is_accepted_by_configs_and_trains(tmp_path):
    cfg = tiny_config(**{"train.steps": 3, "train.loss": [{"type": "l1", "weight": 1.0},
                                                          {"type": "half_l1", "weight": 0.5}]})
    with pytest.raises(ConfigError, match=r"train.loss\[1\].type: unknown loss 'half_l1'"):
        validate_config(cfg, "x.yaml")
    register_loss("half_l1", lambda pred, target, mask=None, **_: 0.5 * l1(pred, target, mask))
    try:
        run(validate_config(cfg, "x.yaml"), tmp_path / "run")
        assert len(read_log(tmp_path / "run")) == 3
    finally:
        unregister_loss("half_l1")


def test_cpu_bf16_autocast_with_channels_last_trains_fp32_weights(tmp_path):
    cfg = tiny_config(**{"train.steps": 6, "train.amp": "bf16", "train.channels_last": True})
    run(load_config(write_config(tmp_path, cfg)), tmp_path / "run")
    log = read_log(tmp_path / "run")
    assert all(math.isfinite(r["loss"]) for r in log) and log[-1]["val_psnr"]["noise:sigma=25"] > 15
    assert all(v.dtype == torch.float32 for v in load_file(tmp_path / "run" / "final.safetensors").values())


def test_stage_errors_name_the_file_and_the_stage(tmp_path):
    cfg = tiny_config(**{"recipe": "staged", "stages": [{"name": "a", "steps": 2},
                                                        {"name": "b", "train_only": ["nothing.*"]}]})
    path = write_config(tmp_path, cfg, "staged.yaml")
    with pytest.raises(ConfigError, match=r"staged.yaml \(stages\[1\] b\): model.train_only"):
        run(load_config(path), tmp_path / "out")
    with pytest.raises(ConfigError, match=r"staged.yaml: stages\[0\].stesp: unknown key"):
        load_config(write_config(tmp_path, tiny_config(**{"recipe": "staged", "stages": [{"name": "a", "stesp": 1}]})
                                 , "staged.yaml"))
    with pytest.raises(ConfigError, match="recipe: recipe staged needs a non-empty stages list"):
        load_config(write_config(tmp_path, tiny_config(recipe="staged"), "staged.yaml"))


RUNNER = "import sys\nfrom restorekit.train import load_config, run\nrun(load_config(sys.argv[1]), sys.argv[2])\n"


def test_two_processes_match_one_for_a_staged_run_with_an_adversarial_stage(tmp_path):
    cfg = adversarial_config(**{"recipe": "staged", "deterministic": False, "threads": None, "train.ema_decay": 0.0,
                                "train.checkpoint_every": 0, "stages": [{"name": "pixel", "steps": 4},
                                                                        {"name": "gan", "steps": 4,
                                                                         "recipe": "adversarial"}]})
    path = write_config(tmp_path, cfg)
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    one = subprocess.run([sys.executable, str(runner), str(path), str(tmp_path / "one")], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=240)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(runner), str(path), str(tmp_path / "two")], capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))
    assert b[0]["loss"] == pytest.approx(a[0]["loss"], abs=1e-6)  # same samples at step 1
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b, strict=True)) < 1e-4
    assert max(abs(x["d_loss"] - y["d_loss"]) for x, y in zip(a[4:], b[4:], strict=True)) < 1e-4


def test_the_configured_strength_reaches_the_forward_call(tmp_path):
    """Strength is a call argument, not module state: conditional IN trained at strength 0 uses (and
    trains) only its level-0 affine pairs; the level-1 pairs get zero gradients and stay as built."""
    cfg = tiny_config(**{"model": {"type": "adafm_net", "strength": 0.0,
                                   "args": {"channels": 1, "features": 8, "blocks": 1, "adafm": False, "norm": "cin"}},
                         "train.steps": 3, "train.ema_decay": 0.0})
    run(load_config(write_config(tmp_path, cfg)), tmp_path / "run")
    from restorekit.models import create_model

    initial = create_model("adafm_net", channels=1, features=8, blocks=1, adafm=False, norm="cin").state_dict()
    final = load_file(tmp_path / "run" / "final.safetensors")
    gammas = [k for k in final if k.endswith(".gamma")]
    assert gammas and all(torch.equal(final[k][1], initial[k][1]) for k in gammas)
    assert any(not torch.equal(final[k][0], initial[k][0]) for k in gammas)
