"""CARN's multi-scale SR training (thesis spec 1.4: one scale from {x2, x3, x4} per batch, a fixed 48x48 LR
patch) and progressive CARN's stage-wise x8 training (spec 2.2, Algorithm 1: stage k's weights start stage
k+1, older modules at 0.1x the lr per stage of age, stage k supervised at x2^k), and the configs/carn
configs, each run for 2 steps on synthetic images."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_train import REPO, read_log

from restorekit.distributed import Dist
from restorekit.errors import ConfigError
from restorekit.models import create_model
from restorekit.train import load_config, run
from restorekit.train.checkpoint import list_checkpoints
from restorekit.train.recipes import plan_stages
from restorekit.train.trainer import load_init, make_loader, prepare

CARN = REPO / "configs" / "carn"
# Seconds-long runs of the committed configs: tiny networks on synthetic images, no workers.
TINY = ["model.args.features=8", "model.args.blocks=1", "model.args.units=1", "data.train.source=synthetic",
        "data.train.count=4", "data.train.size=96", "data.train.workers=0", "data.val.source=synthetic",
        "data.val.count=1", "data.val.size=48", "data.val.crop=null", "data.val.every=0", "device=cpu",
        "deterministic=true", "threads=1", "train.batch_size=4", "train.log_every=1",
        "logging.tensorboard=false", "logging.progress='off'"]
MULTISCALE = [*TINY, "data.train.lr_patch=8", "model.init=null"]


def multiscale(*extra: str):
    return load_config(CARN / "carn_multiscale_t91_bsd200.yaml", [*MULTISCALE, *extra])


def test_each_batch_has_one_scale_drawn_from_seed_and_step_and_every_scale_occurs():
    prepared = prepare(multiscale(), Dist())
    plan = prepared.plan

    def scales(p, steps):
        return [{prepared.levels[k.level].scale for k in p.keys(step)} for step in steps]

    drawn = scales(plan, range(60))
    assert all(len(s) == 1 for s in drawn)  # spec 1.4: one scale per batch
    counts = Counter(s.pop() for s in drawn)
    assert set(counts) == {2, 3, 4} and min(counts.values()) >= 10  # uniform over {2, 3, 4}
    again = prepare(multiscale(), Dist()).plan
    assert [plan.keys(s) for s in (0, 7, 59)] == [again.keys(s) for s in (0, 7, 59)]  # a pure function of (seed, step)
    other = prepare(multiscale("seed=1"), Dist()).plan
    assert scales(other, range(60)) != scales(plan, range(60))


def test_scale_weights_draw_the_scales_in_proportion_still_one_per_batch_and_a_pure_function():
    # RED-Net blind SR (issue 16): x2 drawn in 3 of 5 steps so its small errors are not drowned by x3 / x4.
    prepared = prepare(multiscale("data.train.scale_weights=[3, 1, 1]"), Dist())
    drawn = [{prepared.levels[k.level].scale for k in prepared.plan.keys(step)} for step in range(500)]
    assert all(len(s) == 1 for s in drawn)
    counts = Counter(s.pop() for s in drawn)
    assert 0.52 < counts[2] / 500 < 0.68 and min(counts[3], counts[4]) > 60  # expected 300 / 100 / 100
    again = prepare(multiscale("data.train.scale_weights=[3, 1, 1]"), Dist()).plan
    assert [prepared.plan.keys(s) for s in (0, 9, 499)] == [again.keys(s) for s in (0, 9, 499)]
    only_x3 = prepare(multiscale("data.train.scale_weights=[0, 1, 0]"), Dist()).plan
    assert {prepared.levels[k.level].scale for s in range(40) for k in only_x3.keys(s)} == {3}


@pytest.mark.parametrize("weights", ["[1, 1]", "[-1, 1, 1]", "[0, 0, 0]"])
def test_scale_weights_need_one_non_negative_weight_per_scale(weights):
    with pytest.raises(ConfigError, match="scale_weights"):
        multiscale(f"data.train.scale_weights={weights}")


def test_the_lr_patch_is_fixed_the_target_is_lr_patch_times_scale_and_the_model_gets_the_scale():
    prepared = prepare(multiscale("train.steps=12"), Dist())
    seen = set()
    for raw in make_loader(prepared, 0, 12, Dist()):
        with prepared.training_batch(raw["level"]):
            scale = prepared.conditions["scale"]
        seen.add(scale)
        assert raw["lq"].shape[-2:] == (8, 8)  # the LR patch (thesis: 48)
        assert raw["hq"].shape[-2:] == (8 * scale, 8 * scale)
        output = prepared.module(raw["lq"], scale=scale)
        assert output.shape == raw["hq"].shape
    assert seen == {2, 3, 4} and prepared.conditions == {}  # no scale outside a training batch
    assert [v.name for v in prepared.validation] == ["down:scale=2", "down:scale=3", "down:scale=4"]
    assert [(v.conditions, v.protocol.crop_border) for v in prepared.validation] == \
        [({"scale": s}, s) for s in (2, 3, 4)]


def test_without_lr_patch_the_target_patch_is_fixed_for_every_scale_and_the_input_is_patch_over_scale():
    # RED-Net (spec 2.5): 50x50 patches of the upscaled image whatever the scale; here 24 for x2 / x3 / x4.
    prepared = prepare(multiscale("train.steps=12", "data.train.lr_patch=null", "data.train.patch=24"), Dist())
    seen = set()
    for raw in make_loader(prepared, 0, 12, Dist()):
        with prepared.training_batch(raw["level"]):
            scale = prepared.conditions["scale"]
        seen.add(scale)
        assert raw["hq"].shape[-2:] == (24, 24)
        assert raw["lq"].shape[-2:] == (24 // scale, 24 // scale)
    assert seen == {2, 3, 4}


def test_resume_is_bit_exact_across_a_change_of_scale(tmp_path):
    cfg = multiscale("train.steps=6", "train.checkpoint_every=1", "train.keep_checkpoints=100")
    plan = prepare(cfg, Dist()).plan
    levels = prepare(cfg, Dist()).levels
    scale = [levels[plan.keys(s)[0].level].scale for s in range(6)]
    cut = next(s for s in range(1, 6) if scale[s] != scale[s - 1])  # resume right where the scale changes
    full, part = tmp_path / "full", tmp_path / "part"
    run(cfg, full)
    run(cfg, part)
    for step, path in list_checkpoints(part):
        if step > cut:
            path.unlink()
    run(cfg, part, resume="latest")
    a, b = load_file(full / "final.safetensors"), load_file(part / "final.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in read_log(part)] == [r["loss"] for r in read_log(full)]


@pytest.mark.parametrize(("changes", "message"), [
    (["data.train.scale=2"], "scales .* replaces scale"),
    (["data.train.lr_patch=null", "data.train.patch=50"], "give lr_patch .* or a patch that every scale divides"),
    (["data.train.patch=32"], "lr_patch .* replaces patch"),
])
def test_contradicting_scale_and_patch_keys_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        multiscale(*changes)


@pytest.mark.parametrize(("changes", "message"), [
    (["model.args.scale=2"], "does not take the scale"),  # a single-scale CARN has one head
    (["data.train.levels=['down:scale=2']"], r"names the factor as \{scale\}"),
    (["strategy.type=on_demand"], "steers per level"),
])
def test_multiscale_needs_a_scale_taking_model_and_a_scale_in_the_spec(changes, message):
    with pytest.raises(ConfigError, match=message):
        prepare(multiscale(*changes), Dist())


def test_progressive_stage_targets_are_the_hr_patch_downscaled_to_x2_power_k():
    stages = plan_stages(load_config(CARN / "progressive_carn_x8.yaml", [*TINY, "data.train.lr_patch=8"]))
    for k, plan in enumerate(stages, start=1):
        prepared = prepare(plan.cfg, Dist())
        raw = next(iter(make_loader(prepared, 0, 1, Dist())))
        assert raw["lq"].shape[-2:] == (8, 8)  # spec 2.1: every stage takes the x8 LR
        assert raw["hq"].shape[-2:] == (8 * 2**k, 8 * 2**k)  # stage k: x2^k (Algorithm 1)
        assert prepared.module(raw["lq"]).shape == raw["hq"].shape
        (val,) = prepared.validation
        degraded, target = val.pairs[0]
        assert target.shape[-1] == degraded.shape[-1] * 2**k and val.protocol.crop_border == 2**k
    assert [p.cfg.train.batch_size for p in plan_stages(load_config(CARN / "progressive_carn_x8.yaml"))] == \
        [32, 8, 2]  # spec 2.2: stage batches


def test_progressive_stage_k_initialises_stage_k_plus_1_with_a_fresh_to_rgb():
    torch.manual_seed(0)
    small = dict(blocks=1, units=1, features=8)
    stage1, stage2 = create_model("progressive_carn", stages=1, **small), create_model("progressive_carn", stages=2,
                                                                                        **small)
    fresh = stage2.to_rgb.weight.detach().clone()
    load_init(stage2, stage1.state_dict(), False, ["to_rgb.*"], "test")
    shared = stage1.state_dict()
    assert all(torch.equal(stage2.state_dict()[k], v) for k, v in shared.items() if not k.startswith("to_rgb"))
    assert torch.equal(stage2.to_rgb.weight, fresh)  # Algorithm 1: toRGB_1 is dropped, toRGB_2 is new
    with pytest.raises(ConfigError, match="lack"):  # strict: stage 2's module is not in stage 1's weights
        load_init(stage2, shared, True, ["to_rgb.*"], "test")
    with pytest.raises(ConfigError, match="has no tensor"):  # non-strict never skips a tensor in silence
        load_init(stage1, stage2.state_dict(), False, ["to_rgb.*"], "test")


def test_progressive_run_loads_each_stage_and_trains_older_modules_at_a_tenth_of_the_lr(tmp_path):
    cfg = load_config(CARN / "progressive_carn_x8.yaml",
                      [*TINY, "data.train.lr_patch=8", "stages.0.steps=2", "stages.1.steps=2", "stages.2.steps=2",
                       "stages.0.set={data.train.target_scale: 2, train.batch_size: 2}"])
    run(cfg, tmp_path)
    x2, x4 = load_file(tmp_path / "stages" / "x2.safetensors"), load_file(tmp_path / "stages" / "x4.safetensors")
    assert set(x2) < set(x4) and any(k.startswith("stages.1.") for k in x4)
    final = torch.load(list_checkpoints(tmp_path)[-1][1], weights_only=True)
    lrs = sorted(group["lr"] for group in final["optimizer"]["param_groups"])
    assert lrs == pytest.approx([1e-6, 1e-5, 1e-4])  # stage 3: entry and module 1 at 0.01x, module 2 at 0.1x
    log = read_log(tmp_path)
    assert [r["stage"] for r in log] == ["x2"] * 2 + ["x4"] * 2 + ["x8"] * 2


@pytest.mark.parametrize("name", ["carn_multiscale_t91_bsd200", "carn_m_x8_from_x4", "progressive_carn_x8"])
def test_each_carn_config_validates_and_runs_two_steps(tmp_path, name):
    extra = ["train.steps=2", "data.train.lr_patch=8", "model.init=null", "model.init_exclude=[]"]
    if name == "progressive_carn_x8":
        extra = ["data.train.lr_patch=8", *(f"stages.{i}.steps=1" for i in range(3))]
    summary = run(load_config(CARN / f"{name}.yaml", [*TINY, *extra]), tmp_path)
    assert (tmp_path / "final.safetensors").is_file() and summary["val_psnr"]


def test_carn_m_x8_starts_from_the_released_x4_carn_m_less_its_heads(reference_weights, tmp_path):
    from restorekit.models.carn import convert
    from restorekit.zoo import read_weights

    cfg = load_config(CARN / "carn_m_x8_from_x4.yaml",
                      [*TINY[3:], "model.args.features=64", "data.train.lr_patch=8", f"model.init={reference_weights / 'carn_m.pth'}"])
    module = prepare(cfg, Dist()).module
    released = convert(read_weights(reference_weights / "carn_m.pth"))
    body = [k for k in released if not k.startswith("heads.")]
    assert len(body) > 40 and all(torch.equal(module.state_dict()[k], released[k]) for k in body)
    assert set(module.heads) == {"x8"}


def test_pooled_folders_and_small_images(tmp_path):
    from restorekit.io import write_image

    for folder, sides in (("a", (40, 64)), ("b", (64,))):
        for i, side in enumerate(sides):
            write_image(tmp_path / folder / f"{i}.png", torch.rand(3, side, side))
    base = ["data.train.source=folder", f"data.train.folder=[{tmp_path / 'a'}, {tmp_path / 'b'}]",
            "data.train.lr_patch=16"]  # x4 target: 64 px
    with pytest.raises(ConfigError, match="drop_small"):
        prepare(multiscale(*base, "data.train.drop_small=false"), Dist())
    prepared = prepare(multiscale(*base), Dist())  # the config drops what is too small
    assert len(prepared.sources[0]) == 2 and prepared.sources[0].origin.endswith(str(Path(tmp_path / "b")))
