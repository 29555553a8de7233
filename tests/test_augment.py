"""Augmentations: the 8 flips/rotations, CutBlur and MoA with the thesis's probabilities and alphas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.data import augment
from restorekit.data.augment import AUGMENTATIONS, DEFAULT_ALPHAS, MoA
from restorekit.train.losses import LOSSES, Loss, ssim_value


def test_the_eight_dihedral_transforms_are_distinct_and_invertible():
    x = torch.arange(12.0).view(1, 3, 4)
    outs = [augment.dihedral(x, code) for code in range(8)]
    assert len({(tuple(o.flatten().tolist()), tuple(o.shape)) for o in outs}) == 8
    for code in range(8):
        assert torch.equal(augment.inverse_dihedral(augment.dihedral(x, code), code), x)
        as_numpy = augment.dihedral_numpy(x.permute(1, 2, 0).numpy(), code)
        assert np.array_equal(np.ascontiguousarray(as_numpy).transpose(2, 0, 1), outs[code].numpy())


def test_thesis_default_alphas():
    assert DEFAULT_ALPHAS == {"blend": 0.6, "rgb": 0.0, "mixup": 1.2, "cutout": 0.001, "cutmix": 0.7,
                              "cutmixup": 0.7, "cutblur": 0.7}
    assert augment.CUTMIXUP_MIXUP_ALPHA == 1.2
    assert AUGMENTATIONS == ("blend", "rgb", "mixup", "cutout", "cutmix", "cutmixup", "cutblur")


def test_cutblur_box_ratio_direction_and_target():
    """lambda ~ N(0.7, 0.01^2), square box inside the patch; HQ-into-LQ and LQ-into-HQ each with p 0.5."""
    rng = np.random.default_rng(0)
    lq, hq = torch.zeros(1, 1, 100, 100), torch.ones(1, 1, 100, 100)
    sides, hq_into_lq = [], 0
    for _ in range(2000):
        out, target = augment.cutblur(lq, hq, rng)
        assert torch.equal(target, hq)  # the target is always the unmodified HQ
        ones = out[0, 0] == 1
        rows, cols = int(ones.any(1).sum()), int(ones.any(0).sum())
        if int(ones.sum()) == rows * cols:  # the ones form the box: HQ pasted into the LQ image
            hq_into_lq += 1
            box = ones
        else:  # the zeros form the box: LQ pasted into the HQ image
            box = ~ones
        rows, cols = int(box.any(1).sum()), int(box.any(0).sum())
        assert rows == cols and int(box.sum()) == rows * cols  # a square box fully inside the patch
        sides.append(rows)
    sides = np.array(sides)
    assert abs(hq_into_lq / 2000 - 0.5) < 0.035
    assert 69.0 < sides.mean() < 70.0  # int(100 * lambda), lambda mean 0.7
    assert 0.7 < sides.std() < 1.4  # std of int(100 * N(0.7, 0.01^2)) is about 1 pixel
    assert torch.equal(lq, torch.zeros(1, 1, 100, 100))  # inputs untouched


def test_cutblur_upsamples_the_lq_to_hq_size_for_sr():
    rng = np.random.default_rng(1)
    lq = torch.rand(2, 3, 12, 12)
    out, hq = augment.cutblur(lq, torch.rand(2, 3, 48, 48), rng)
    assert out.shape == (2, 3, 48, 48)


def test_moa_decision_probability_and_uniform_choice():
    moa = MoA(p=0.6)
    rng = np.random.default_rng(0)
    picks = [moa.choose(rng) for _ in range(14000)]
    none = picks.count("none") / len(picks)
    assert abs(none - 0.4) < 0.015
    for name in AUGMENTATIONS:
        assert abs(picks.count(name) / len(picks) - 0.6 / 7) < 0.01, name


def test_moa_realsr_ratio_puts_forty_percent_on_cutblur():
    moa = MoA(p=1.0, mix_p=(0.1,) * 6 + (0.4,))
    rng = np.random.default_rng(0)
    picks = [moa.choose(rng) for _ in range(10000)]
    assert abs(picks.count("cutblur") / 1e4 - 0.4) < 0.015
    assert abs(picks.count("mixup") / 1e4 - 0.1) < 0.01
    assert "none" not in picks
    with pytest.raises(ValueError):
        MoA(mix_p=(1.0, 2.0))
    with pytest.raises(ValueError):
        MoA(augs=("cutblur", "dropout"))


def test_moa_applies_exactly_one_member_and_reports_it():
    moa = MoA(augs=("rgb", "cutout"), p=1.0)
    rng = np.random.default_rng(0)
    lq, hq = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    seen = set()
    for _ in range(20):
        out_lq, out_hq, mask, name = moa(lq, hq, rng)
        seen.add(name)
        assert (mask is not None) == (name == "cutout")
    assert seen == {"rgb", "cutout"}


def test_cutout_erases_about_alpha_of_the_input_and_masks_the_loss():
    rng = np.random.default_rng(0)
    lq, hq = torch.rand(8, 3, 64, 64) + 0.1, torch.rand(8, 3, 64, 64)
    out_lq, out_hq, mask = augment.cutout(lq, hq, rng, alpha=0.001)
    erased = mask == 0
    assert torch.equal(out_hq, hq)
    assert abs(erased.float().mean().item() - 0.001) < 0.0006
    assert bool((out_lq[erased.expand_as(out_lq)] == 0).all()) and bool((out_lq[~erased.expand_as(out_lq)] > 0).all())
    # A prediction wrong only at erased pixels has zero masked loss.
    pred = hq.clone()
    pred[erased.expand_as(pred)] += 0.5
    for name in ("l1", "l2", "charbonnier"):
        masked = Loss([{"type": name, "weight": 1.0}], 1e-6)(pred, hq, mask)
        assert float(masked.max()) < 1e-5, name
        assert float(Loss([{"type": name, "weight": 1.0}], 1e-6)(pred, hq).max()) > 1e-5
    # For SR the mask is made at LR size and upsampled (nearest) to the target's size.
    _, _, sr_mask = augment.cutout(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 32, 32), np.random.default_rng(1), 0.2)
    assert sr_mask.shape == (2, 1, 32, 32) and torch.equal(sr_mask[..., ::4, ::4].repeat_interleave(4, -1).repeat_interleave(4, -2), sr_mask)


def test_blend_mixes_input_and_target_with_the_same_colour_and_weight():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lq, hq = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
        state = rng.bit_generator.state
        out_lq, out_hq = augment.blend(lq, hq, rng, alpha=0.6)
        replay = np.random.default_rng()
        replay.bit_generator.state = state
        c = replay.uniform(0, 1, (2, 3, 1, 1))
        v = replay.uniform(0.6, 1)
        assert 0.6 <= v <= 1
        assert torch.allclose(out_lq, v * lq + (1 - v) * torch.from_numpy(c).float(), atol=1e-6)
        assert torch.allclose(out_hq, v * hq + (1 - v) * torch.from_numpy(c).float(), atol=1e-6)


def test_mixup_weight_is_beta_1_2_and_shared_by_input_and_target():
    rng = np.random.default_rng(0)
    lq = torch.rand(4, 1, 3, 3)
    weights = []
    for _ in range(4000):
        state = rng.bit_generator.state
        out_lq, out_hq = augment.mixup(lq, lq * 10, rng, alpha=1.2)
        replay = np.random.default_rng()
        replay.bit_generator.state = state
        v, perm = replay.beta(1.2, 1.2), torch.from_numpy(replay.permutation(4))
        assert torch.allclose(out_lq, v * lq + (1 - v) * lq[perm], atol=1e-6)
        assert torch.allclose(out_hq, out_lq * 10, atol=1e-5)  # same v and partner for the target
        weights.append(v)
    weights = np.array(weights)
    assert abs(weights.mean() - 0.5) < 0.015 and abs(weights.var() - 1 / (4 * 3.4)) < 0.006  # Beta(1.2, 1.2)


def test_cutmix_and_cutmixup_use_the_same_box_at_each_resolution():
    rng = np.random.default_rng(0)
    lq = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 10, 10).contiguous()
    hq = lq.repeat_interleave(2, -1).repeat_interleave(2, -2)
    for fn in (augment.cutmix, augment.cutmixup):
        for _ in range(10):
            out_lq, out_hq = fn(lq, hq, rng)
            assert torch.equal(out_lq.repeat_interleave(2, -1).repeat_interleave(2, -2), out_hq)
    out_lq, _ = augment.cutmix(lq, hq, np.random.default_rng(3))
    changed = (out_lq != lq).any(dim=0)[0]
    rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
    if len(rows):
        assert 6 <= len(rows) <= 8 and 6 <= len(cols) <= 8  # side int(10 * ~0.7)


def test_rgb_permutation_is_the_same_for_input_and_target():
    rng = np.random.default_rng(0)
    lq = torch.arange(3.0).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out_lq, out_hq = augment.rgb_permute(lq, lq + 10, rng)
    assert torch.equal(out_hq, out_lq + 10)
    assert sorted(out_lq[0, :, 0, 0].tolist()) == [0.0, 1.0, 2.0]


def test_mbn_loss_is_durn_minus_1_1_ssim_plus_0_75_l1():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 32, 32)
    pred = (target + 0.05 * torch.randn_like(target)).clamp(0, 1)
    mbn = LOSSES["mbn"](pred, target)
    expected = -1.1 * ssim_value(pred, target) + 0.75 * (pred - target).abs().flatten(1).mean(1)
    assert torch.allclose(mbn, expected)
    assert torch.allclose(LOSSES["mbn"](target, target), torch.full((2,), -1.1))
    assert torch.allclose(LOSSES["ssim"](target, target), torch.zeros(2), atol=1e-6)
    assert bool((LOSSES["ssim"](pred, target) > 0).all())
    combined = Loss([{"type": "l1", "weight": 2.0}, {"type": "ssim", "weight": 0.5}])(pred, target)
    assert torch.allclose(combined, 2 * LOSSES["l1"](pred, target) + 0.5 * LOSSES["ssim"](pred, target))


def test_charbonnier_tends_to_l1():
    a, b = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5)
    assert float(LOSSES["charbonnier"](a, b, eps=1e-3)) == pytest.approx((0.25 + 1e-6) ** 0.5)
    assert float(LOSSES["l2"](a, b)) == pytest.approx(0.25)
