"""Level-sampling strategies: single, rigid-joint, On-Demand (exact rule), uncertainty, curricula, MBN cycles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train import read_log, tiny_config, write_config

from restorekit.cli import main
from restorekit.data.samplers import (
    MBNCycle,
    StepBatchSampler,
    StepPlan,
    build_strategy,
    largest_remainder,
    on_demand_shares,
    rank_slice,
)
from restorekit.errors import ConfigError
from restorekit.train.losses import UncertaintyWeighting


def counts(levels, n):
    return np.bincount(levels, minlength=n).tolist()


def test_single_level_uses_only_that_level():
    strategy = build_strategy("single", 3, level=2)
    rng = np.random.default_rng(0)
    assert counts(strategy.levels(0, 16, rng), 3) == [0, 0, 16]
    with pytest.raises(ConfigError, match="out of range"):
        build_strategy("single", 3, level=3)


def test_rigid_joint_gives_every_level_an_equal_share_of_each_batch():
    strategy = build_strategy("rigid_joint", 5)
    rng = np.random.default_rng(0)
    for step in range(3):
        levels = strategy.levels(step, 100, rng)
        assert counts(levels, 5) == [20] * 5  # the on-demand repository's rigid-joint default: 20 each
    batch = strategy.levels(0, 12, rng)
    assert sorted(counts(batch, 5)) == [2, 2, 2, 3, 3]  # largest remainder when it does not divide
    assert not np.array_equal(strategy.levels(0, 100, np.random.default_rng(1)), np.repeat(np.arange(5), 20))


def test_on_demand_rule_is_score_times_100_over_the_sum_with_score_one_over_psnr():
    psnr = [20.0, 30.0, 40.0]
    shares = on_demand_shares(psnr)
    score = [1 / 20, 1 / 30, 1 / 40]
    assert shares == pytest.approx([s * 100 / sum(score) for s in score])
    assert shares == pytest.approx([46.1538, 30.7692, 23.0769], abs=1e-4)
    assert shares[0] > shares[1] > shares[2]  # worse PSNR, more samples
    assert on_demand_shares([30.0, 30.0]) == pytest.approx([50.0, 50.0])
    assert on_demand_shares([30.0, float("inf")]) == pytest.approx([100.0, 0.0])  # a solved level gets nothing
    assert on_demand_shares([float("nan"), 20.0]) == pytest.approx([50.0, 50.0])  # broken validation: no starving
    strategy = build_strategy("on_demand", 3)
    assert strategy.shares(0) == pytest.approx([1 / 3] * 3)  # starts as rigid-joint
    strategy.update(psnr)
    assert counts(strategy.levels(0, 100, np.random.default_rng(0)), 3) == [46, 31, 23]


def test_largest_remainder_sums_to_the_batch():
    for total in (1, 7, 16, 100):
        out = largest_remainder(np.array([46.15, 30.77, 23.08]), total)
        assert out.sum() == total and (out >= 0).all()


def test_on_demand_share_of_a_harder_level_rises_after_an_epoch(tmp_path):
    """Toy setup: level 1 (sigma 50) is much harder than level 0 (sigma 5); after one epoch of validation it
    gets more than half of the batch, and the next batches are really composed that way."""
    cfg = tiny_config(**{
        "strategy": {"type": "on_demand", "epoch_steps": 5}, "train.steps": 10, "train.batch_size": 10,
        "data.train.levels": ["noise:sigma=5", "noise:sigma=50"],
        "data.val.levels": ["noise:sigma=5", "noise:sigma=50"], "train.ema_decay": 0.0})
    out = tmp_path / "run"
    assert main(["train", str(write_config(tmp_path, cfg)), "--out", str(out)]) == 0
    log = {r["step"]: r for r in read_log(out)}
    epoch = log[5]
    easy, hard = epoch["val_psnr"]["noise:sigma=5"], epoch["val_psnr"]["noise:sigma=50"]
    assert hard < easy
    assert epoch["shares"]["noise:sigma=50"] > 0.5 > epoch["shares"]["noise:sigma=5"]
    assert epoch["shares"]["noise:sigma=50"] == pytest.approx((1 / hard) / (1 / hard + 1 / easy))
    assert set(log[10]["shares"]) == {"noise:sigma=5", "noise:sigma=50"}

    strategy = build_strategy("on_demand", 2)
    strategy.update([easy, hard])
    plan = StepPlan(strategy, [0, 0], [6], batch_size=10, seed=0)
    levels = [k.level for k in plan.keys(5)]
    assert levels.count(1) > levels.count(0)


def test_uncertainty_weighting_learns_one_log_variance_per_level():
    weighting = UncertaintyWeighting(3)
    per_sample = torch.tensor([0.5, 0.5, 0.1, 2.0], requires_grad=True)
    levels = torch.tensor([0, 0, 1, 2])
    loss = weighting(per_sample, levels)
    assert float(loss.detach()) == pytest.approx(0.5 + 0.1 + 2.0)  # s = 0: exp(0) * L + 0 per level
    loss.backward()
    # d/ds (exp(-s) L + s) = 1 - L at s = 0: a level with a large loss pushes its log-variance up.
    assert weighting.log_vars.grad.tolist() == pytest.approx([0.5, 0.9, -1.0])
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.0, 1.0, -1.0]))
    value = weighting(per_sample.detach(), levels)
    expected = 0.5 + (np.exp(-1) * 0.1 + 1) + (np.exp(1) * 2.0 - 1)
    assert float(value.detach()) == pytest.approx(expected)
    # Levels absent from the batch contribute nothing (not even their s).
    assert float(weighting(torch.tensor([0.3]), torch.tensor([0])).detach()) == pytest.approx(0.3)


def test_uncertainty_strategy_trains_the_log_variances(tmp_path):
    cfg = tiny_config(**{"strategy": {"type": "uncertainty"}, "train.steps": 6,
                         "data.train.levels": ["noise:sigma=5", "noise:sigma=50"], "train.ema_decay": 0.0,
                         "train.optimizer": {"lr": 0.05}})
    out = tmp_path / "run"
    assert main(["train", str(write_config(tmp_path, cfg)), "--out", str(out)]) == 0
    weights = read_log(out)[-1]["level_weights"]
    assert set(weights) == {"noise:sigma=5", "noise:sigma=50"}
    assert all(w != 1.0 for w in weights.values())  # moved from their initial exp(-0)


@pytest.mark.parametrize("mode,reverse,expected", [
    ("staged", False, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
    ("staged", True, [[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]]),
    ("cumulative", False, [[1, 0, 0, 0], [.5, .5, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [.25] * 4]),
    ("cumulative", True, [[0, 0, 0, 1], [0, 0, .5, .5], [0, 1 / 3, 1 / 3, 1 / 3], [.25] * 4]),
])
def test_curriculum_and_anti_curriculum_stages(mode, reverse, expected):
    strategy = build_strategy("anti_curriculum" if reverse else "curriculum", 4, total_steps=400, curriculum=mode)
    for stage, shares in enumerate(expected):
        for step in (stage * 100, stage * 100 + 99):
            assert strategy.shares(step) == pytest.approx(shares)
    levels = strategy.levels(150, 12, np.random.default_rng(0))  # stage 1
    assert set(levels.tolist()) <= set(np.flatnonzero(np.array(expected[1]) > 0).tolist())


def test_mbn_cycle_packs_single_level_minibatches_in_random_order():
    """MBN Sec. 3.5: each cycle is 1 haze, 1 rain, 1 JPEG and 3 blur minibatches in random order."""
    names = ["haze", "rain", "jpeg", "blur"]
    strategy = MBNCycle(4, [1, 1, 1, 3], seed=0)
    assert strategy.cycle_length == 6
    orders = []
    for cycle in range(20):
        steps = range(cycle * 6, cycle * 6 + 6)
        per_step = [strategy.levels(s, 8, np.random.default_rng(s)) for s in steps]
        assert all(len(set(b.tolist())) == 1 for b in per_step)  # every minibatch is single-factor
        seq = [names[int(b[0])] for b in per_step]
        assert sorted(seq) == sorted(["haze", "rain", "jpeg", "blur", "blur", "blur"])
        orders.append(tuple(seq))
    assert len(set(orders)) > 5  # shuffled per cycle
    assert MBNCycle(4, [1, 1, 1, 3], seed=0).cycle(3).tolist() == strategy.cycle(3).tolist()  # reproducible
    with pytest.raises(ConfigError):
        MBNCycle(4, [1, 1, 3], seed=0)


def test_plan_walks_every_image_once_per_epoch_and_is_reproducible():
    strategy = build_strategy("rigid_joint", 2)
    plan = StepPlan(strategy, [0, 0], [10], batch_size=5, seed=3)
    first_epoch = [k.image for step in (0, 1) for k in plan.keys(step)]
    assert sorted(first_epoch) == list(range(10))
    again = StepPlan(strategy, [0, 0], [10], batch_size=5, seed=3)
    assert [again.keys(s) for s in range(4)] == [plan.keys(s) for s in range(4)]
    other = StepPlan(strategy, [0, 0], [10], batch_size=5, seed=4)
    assert other.keys(0) != plan.keys(0)
    assert len({k.seed for s in range(4) for k in plan.keys(s)}) == 20  # every sample its own seed


def test_ranks_split_the_global_batch_without_overlap():
    strategy = build_strategy("rigid_joint", 3)
    plan = StepPlan(strategy, [0, 0, 0], [50], batch_size=12, seed=0)
    whole = next(iter(StepBatchSampler(plan, 7, 8)))
    parts = [next(iter(StepBatchSampler(plan, 7, 8, rank=r, world=4))) for r in range(4)]
    assert sum(parts, []) == whole
    with pytest.raises(ConfigError, match="does not split evenly"):
        rank_slice(10, 0, 4)
    sampler = StepBatchSampler(plan, 3, 9, rank=1, world=2)
    assert len(sampler) == 6 and len(list(sampler)) == 6


def test_levels_with_their_own_folders_feed_mbn_cycles(tmp_path):
    """MBN's per-factor data: a level may bring its own folder (here a paired degraded/clean set)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("clean", "degraded"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    for i in range(3):
        clean = rng.integers(0, 255, (40, 40), dtype=np.uint8)
        Image.fromarray(clean).save(tmp_path / "pairs" / "clean" / f"{i}.png")
        Image.fromarray(255 - clean).save(tmp_path / "pairs" / "degraded" / f"{i}.png")
    cfg = tiny_config(**{
        "data.train.levels": {"noise": "noise:sigma=30", "pairs": {"spec": None, "folder": str(tmp_path / "pairs"),
                                                                   "patch": 16}},
        "strategy": {"type": "mbn_cycle", "cycle": [1, 2]}, "train.steps": 6, "train.ema_decay": 0.0})
    out = tmp_path / "run"
    assert main(["train", str(write_config(tmp_path, cfg)), "--out", str(out)]) == 0
    assert json.loads((out / "final.json").read_text())["training"]["levels"] == ["noise", "pairs"]
