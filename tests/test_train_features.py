"""Trainer features: schedules, clipping, EMA, AdamW, MoA and device-side degradation in a run, TensorBoard,
progress bar, resume without a checkpoint, and every committed config validating."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import REPO, read_log, tiny_config, write_config

from restorekit.cli import main
from restorekit.errors import ConfigError
from restorekit.train import load_config, run
from restorekit.train.checkpoint import latest_checkpoint, load_checkpoint
from restorekit.train.config import Scheduler, iter_keys, reference_markdown
from restorekit.train.recipes import EMA, build_optimizer, clip_gradients, lr_factor, plan_stages


def sched(**kw) -> Scheduler:
    return Scheduler(**kw)


def test_learning_rate_schedules():
    assert [lr_factor(s, sched(), 100, 1e-3) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    multistep = sched(type="multistep", milestones=[10, 20], gamma=0.1)
    assert [lr_factor(s, multistep, 100, 1e-3) for s in (9, 10, 19, 20)] == pytest.approx([1, 0.1, 0.1, 0.01])
    cosine = sched(type="cosine", eta_min=1e-5)
    assert lr_factor(0, cosine, 100, 1e-3) == pytest.approx(1.0)
    assert lr_factor(50, cosine, 100, 1e-3) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(100, cosine, 100, 1e-3) == pytest.approx(0.01)
    warm = sched(type="cosine", warmup_steps=10)
    assert [lr_factor(s, warm, 110, 1.0) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(60, warm, 110, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_gradient_clipping_by_norm_and_value():
    params = [torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(3))]
    params[0].grad, params[1].grad = torch.tensor([3.0, 0, 0, 0]), torch.tensor([0.0, 4.0, 0])
    clip_gradients(params, norm=1.0)
    assert float(torch.cat([p.grad for p in params]).norm()) == pytest.approx(1.0, rel=1e-4)
    params[0].grad = torch.tensor([2.0, -3.0, 0.1, 0.0])
    clip_gradients(params, value=0.5)
    assert params[0].grad.tolist() == pytest.approx([0.5, -0.5, 0.1, 0.0])


def test_ema_tracks_the_weights_and_adamw_is_selectable(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    ema = EMA(model, decay=0.9)
    before = ema.model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.model[0].weight, before + 0.1)
    # AveragedModel gives the numbers of the hand-written EMA it replaced (lerp from the initial weights,
    # buffers copied), bit for bit.
    reference = [p.detach().clone() for p in ema.model.parameters()]
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(4, 2))  # moves the BatchNorm statistics
        ema.update(model)
        for ref, p in zip(reference, model.parameters(), strict=True):
            ref.lerp_(p.detach(), 1.0 - 0.9)
    assert all(torch.equal(a, b) for a, b in zip(reference, ema.model.parameters(), strict=True))
    assert torch.equal(ema.model[1].running_mean, model[1].running_mean)
    cfg = load_config(write_config(tmp_path, tiny_config(
        **{"train.optimizer": {"type": "adamw", "lr": 1e-3, "weight_decay": 0.01}})))
    optimizer = build_optimizer(cfg.train.optimizer, list(model.parameters()))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 0.01


def test_final_weights_are_the_ema_weights(tmp_path):
    out = tmp_path / "run"
    run(load_config(write_config(tmp_path, tiny_config(**{"train.steps": 6, "train.ema_decay": 0.5}))), out)
    state = load_checkpoint(latest_checkpoint(out))
    final = load_file(out / "final.safetensors")
    assert all(torch.equal(final[k], state["ema"][k]) for k in final)
    assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in final)


def test_moa_with_masked_cutout_and_device_side_degradation_train(tmp_path):
    cfg = tiny_config(**{"train.steps": 6, "augment": {"moa": True, "p": 1.0, "augs": ["cutout", "blend", "mixup"],
                                                       "alpha": {"cutout": 0.2}},
                         "data.train.degrade_on": "device"})
    out = tmp_path / "run"
    run(load_config(write_config(tmp_path, cfg)), out)
    log = read_log(out)
    assert len(log) == 6 and all(math.isfinite(r["loss"]) for r in log)
    again = tmp_path / "again"
    run(load_config(write_config(tmp_path, cfg)), again)
    assert [r["loss"] for r in read_log(again)] == [r["loss"] for r in log]  # still reproducible


def test_tensorboard_events_and_progress_bar(tmp_path, capsys):
    cfg = tiny_config(**{"train.steps": 4, "logging": {"tensorboard": True, "progress": "on"}})
    out = tmp_path / "run"
    run(load_config(write_config(tmp_path, cfg)), out)
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"] and len(acc.Scalars("train/loss")) == 4
    assert "val/psnr/noise:sigma=25" in acc.Tags()["scalars"]
    err = capsys.readouterr().err
    assert "4/4" in err and "loss" in err and "it/s" in err


def test_resume_without_a_checkpoint_starts_fresh(tmp_path, capsys):
    path = write_config(tmp_path, tiny_config(**{"train.steps": 3}))
    assert main(["train", str(path), "--out", str(tmp_path / "new"), "--resume"]) == 0
    assert "starting from step 0" in capsys.readouterr().out
    assert [r["step"] for r in read_log(tmp_path / "new")] == [1, 2, 3]


def random_network_losses(cfg) -> list[str]:
    """A perceptual loss's network file is the user's (VGG-19 cannot be downloaded here): the test-only
    random network stands in, so the rest of the config is still checked."""
    from restorekit.train.losses import holds_network

    terms = [{"type": t.type, "weight": t.weight, "random_init": True} if holds_network(t.type) else t.to_plain()
             for t in cfg.train.loss]
    return [f"train.loss={json.dumps(terms)}"] if terms != [t.to_plain() for t in cfg.train.loss] else []


def made_folder_stand_in(cfg, data_dir: Path) -> list[str]:
    """A training folder that a script makes under runs/ (SimUSR's LR-only BSD200, `restorekit degrade`) is
    not there in a fresh checkout: Set5's shipped x4 LR images (also LR-only) stand in for it."""
    folder = cfg.data.train.folder
    if not isinstance(folder, str) or not folder.startswith("runs/") or (REPO / folder).is_dir():
        return []
    return [f"data.train.folder={data_dir / 'lr' / 'Set5' / 'LR_bicubic' / 'X4'}", "data.train.drop_small=true"]


def made_init_stand_in(cfg) -> list[str]:
    """A `model.init` that an earlier run writes under runs/ (DL-Net's fine-tunings start from the reference
    run's final.safetensors) is not there in a fresh checkout: the config is checked from a fresh start."""
    init = cfg.model.init
    if not isinstance(init, str) or not init.startswith("runs/") or (REPO / init).is_file():
        return []
    return ["model.init=null"]


RECOGNITION_CONFIGS = REPO / "configs" / "recognition"  # the distortion recogniser's own loop and schema


def test_every_committed_config_validates(data_dir):
    configs = [p for p in sorted((REPO / "configs").rglob("*.yaml")) if RECOGNITION_CONFIGS not in p.parents]
    assert len(configs) >= 5
    from restorekit.train.recognition import RecognitionConfig

    for path in sorted(RECOGNITION_CONFIGS.glob("*.yaml")):
        assert RecognitionConfig.load(path).steps > 0, path
    for path in configs:
        cfg = load_config(path)
        assert cfg.train.steps > 0, path
    from restorekit.distributed import Dist
    from restorekit.train.trainer import prepare

    for path in configs:  # builds models, loads images, parses every spec: everything but the steps
        overrides = ["data.train.limit=8", "data.val.limit=1", *random_network_losses(load_config(path)),
                     *made_folder_stand_in(load_config(path), data_dir), *made_init_stand_in(load_config(path))]
        for plan in plan_stages(load_config(path, overrides)):
            prepared = prepare(plan.cfg, Dist())
            assert prepared.levels and prepared.validation, path


def test_docs_list_every_config_key():
    text = (REPO / "docs" / "training.md").read_text()
    missing = [k for k, _ in iter_keys() if f"`{k}`" not in text]
    assert not missing, f"docs/training.md does not document {missing}"
    assert reference_markdown() in text, "docs/training.md: regenerate the key table with reference_markdown()"


def test_a_config_with_a_base_lists_only_its_changes_mappings_merge_lists_replace(tmp_path):
    (tmp_path / "first.yaml").write_text("name: first\nmodel: {type: rednet}\ntrain: {steps: 100, optimizer: {type: adam, lr: 1.0e-4}}\n"
                                         "data: {train: {levels: ['noise:sigma=10', 'noise:sigma=50']}}\n")
    (tmp_path / "second.yaml").write_text("base: first.yaml\nname: second\ntrain: {optimizer: {lr: 4.0e-4}}\n"
                                          "data: {train: {levels: ['noise:sigma=50']}}\n")
    (tmp_path / "third.yaml").write_text("base: second.yaml\ntrain: {steps: 7}\n")
    cfg = load_config(tmp_path / "third.yaml")
    assert (cfg.name, cfg.train.steps, cfg.train.optimizer.type, cfg.train.optimizer.lr) == ("second", 7, "adam", 4e-4)
    assert [lv.spec for lv in cfg.data.train.levels] == ["noise:sigma=50"]  # a list replaces, never appends


def test_a_mapping_marked_delete_replaces_the_bases_whole(tmp_path):
    """mmengine's `_delete_: true`: a new model type's args must not inherit the old model's keys (the small
    DRRN configs over VDSR's, configs/dlnet/sr_*drrn_small*_x2.yaml)."""
    (tmp_path / "vdsr.yaml").write_text("name: vdsr\nmodel: {type: vdsr, args: {depth: 20, features: 64, channels: 1}}\n"
                                        "data: {train: {levels: ['noise:sigma=10']}}\ntrain: {steps: 5}\n")
    (tmp_path / "drrn.yaml").write_text("base: vdsr.yaml\nmodel: {type: drrn, args: {_delete_: true, units: 2, features: 8}}\n")
    (tmp_path / "merged.yaml").write_text("base: vdsr.yaml\nmodel: {args: {features: 16}}\n")
    assert load_config(tmp_path / "drrn.yaml").model.args == {"units": 2, "features": 8}
    assert load_config(tmp_path / "merged.yaml").model.args == {"depth": 20, "features": 16, "channels": 1}
    (tmp_path / "fresh.yaml").write_text("base: vdsr.yaml\nstrategy: {_delete_: true, type: single}\n")
    assert load_config(tmp_path / "fresh.yaml").strategy.type == "single"  # no base mapping under it: mark dropped


def test_a_missing_or_circular_base_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "orphan.yaml").write_text("base: gone.yaml\nname: orphan\n")
    with pytest.raises(ConfigError, match=r"gone.yaml: no such config file \(the base of .*orphan.yaml\)"):
        load_config(tmp_path / "orphan.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="b.yaml: base: a.yaml leads back to itself"):
        load_config(tmp_path / "a.yaml")


def test_red_phase_configs_are_their_predecessor_plus_the_phase_changes():
    # configs/rednet: a phase or fine-tune lists only what it changes (the denoiser's phase 2: start, steps, lr)
    first = load_config(REPO / "configs" / "rednet" / "denoise_blind_red30.yaml").model_dump()
    second = load_config(REPO / "configs" / "rednet" / "denoise_blind_red30_phase2.yaml").model_dump()
    changed = sorted(f"{section}.{key}" for section in first if isinstance(first[section], dict)
                     for key in first[section] if first[section][key] != second[section][key])
    assert changed == ["model.init", "train.optimizer", "train.scheduler", "train.steps"]
