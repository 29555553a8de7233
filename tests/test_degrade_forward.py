"""DL-Net's differentiable forward operators, and SHDD's spatially varying composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.degrade import SHDD_POOL, Degradation, NotDifferentiableError, parse_spec, split_regions

# The DL-Net operators: mask multiply (inpainting), Bernoulli mask (interpolation), blur, blur + ↓t.
DLNET_SPECS = [
    "inpaint:kind=square,size=3,shift=1",
    "bernoulli:ratio=0.5",
    "blur:kind=gaussian,width=1.3",
    "blur:kind=gaussian,width=1.3+down:scale=2,method=decimate",
    "blur:kind=gaussian,width=0.8+down:scale=2",
]


def small() -> torch.Tensor:
    return torch.rand(3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("spec", DLNET_SPECS)
def test_dlnet_forward_operators_pass_gradcheck(spec):
    _, record = parse_spec(spec).apply_one(small(), seed=5)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    # fast_mode checks a random projection of the Jacobian: the same test at a fraction of the cost.
    assert torch.autograd.gradcheck(record.forward, (x,), eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("spec", ["inpaint:kind=square,size=3", "bernoulli:ratio=0.5", "blur:kind=gaussian,width=1.3+down:scale=2,method=decimate,quantize=false", "down:scale=2,quantize=false", "inpaint:kind=freeform", "blur:kind=trajectory", "rain", "haze", "contrast:level=30", "lowpass:ratio=0.5"])
def test_forward_of_the_clean_image_is_the_degraded_one(spec):
    clean = small()
    degraded, record = parse_spec(spec).apply_one(clean, seed=2)
    assert torch.allclose(record.forward(clean), degraded, atol=1e-10)
    # The same operator rebuilt from JSON alone (masks/kernels regenerated from the seed):
    assert torch.allclose(Degradation.from_json(record.to_json()).forward(clean), degraded, atol=1e-10)


def test_noise_is_epsilon_and_jpeg_has_no_forward():
    x = small()
    _, noisy = parse_spec("noise:sigma=25").apply_one(x, seed=0)
    assert torch.equal(noisy.forward(x), x)
    _, jpeg = parse_spec("jpeg:quality=30").apply_one(x, seed=0)
    with pytest.raises(NotDifferentiableError, match="jpeg has no differentiable forward"):
        jpeg.forward(x)


def test_training_batch_forward_uses_each_samples_mask():
    batch = torch.rand(6, 3, 8, 8, dtype=torch.float64)
    out, records = parse_spec("inpaint:kind=square,size=1..4,shift=2")(batch, torch.Generator().manual_seed(0))
    assert torch.equal(records.forward(batch), out)
    x = batch.clone().requires_grad_(True)
    records.forward(x).sum().backward()
    assert torch.equal(x.grad, torch.stack([r.steps[0].state["mask"] for r in records]).expand_as(x))


# --------------------------------------------------------------------------------------------- SHDD


@pytest.mark.parametrize(("level", "count"), [("easy", 2), ("moderate", 3), ("difficult", 4)])
def test_shdd_regions_tile_the_image_and_map_the_distortions(level, count):
    clean = torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(1))
    clean = (clean * 255).round() / 255
    out, record = parse_spec(f"shdd:level={level}").apply_one(clean, seed=3)
    assert len(record.regions) == count and record.level_name == level
    coverage = torch.zeros(48, 64)
    for region in record.regions:
        top, left, bottom, right = region.box
        coverage[top:bottom, left:right] += 1
    assert torch.equal(coverage, torch.ones(48, 64))  # a partition: every pixel exactly once
    region_map = record.region_map()
    assert region_map.shape == (48, 64) and set(region_map.unique().tolist()) <= set(range(len(SHDD_POOL)))
    for region in record.regions:
        top, left, bottom, right = region.box
        inside = (out - clean)[:, top:bottom, left:right]
        if region.type == "identity":
            assert torch.equal(inside, torch.zeros_like(inside))  # clean regions stay clean (uint8 input)
        else:
            assert inside.abs().max() > 0


def test_shdd_twelve_versions_differ_and_use_every_type():
    clean = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    pipe = parse_spec("shdd:level=difficult")
    records = [pipe.apply_one(clean, seed)[1] for seed in range(12)]
    assert len({tuple(r.region_map().flatten().tolist()) for r in records}) == 12
    assert {region.type for r in records for region in r.regions} == set(SHDD_POOL)


def test_shdd_levels_are_in_the_thesis_ranges():
    clean = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    ranges = {"noise": ("var", 0.005, 0.02), "blur": ("width", 1.0, 2.5), "pink": ("scale", 6, 10), "contrast": ("level", 25, 40)}
    for seed in range(10):
        for region in parse_spec("shdd:level=difficult").apply_one(clean, seed)[1].regions:
            if region.step is not None:
                key, low, high = ranges[region.type]
                assert low <= region.step.levels[key] <= high


def test_shdd_training_batch_returns_region_maps():
    batch = torch.rand(5, 3, 32, 40)
    out, records = parse_spec("shdd:level=moderate")(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and records.region_maps().shape == (5, 32, 40)
    assert all(len(r.regions) == 3 for r in records)


def test_split_regions_never_makes_empty_boxes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        boxes = split_regions(rng, 9, 7, 4)
        assert len(boxes) == 4 and all(b > t and r > left for t, left, b, r in boxes)
        assert sum((b - t) * (r - left) for t, left, b, r in boxes) == 63


@pytest.mark.parametrize("spec", ["blur:kind=motion", "blur:kind=trajectory", "blur:kind=gaussian,width=0..3", "blur:kind=disk,radius=0.5..4", "rain", "haze", "pink", "inpaint:kind=text,lines=1..4"])
def test_batched_training_path_agrees_with_each_samples_record(spec):
    """Per-sample levels in one batched call give what each sample's own operator gives alone."""
    batch = torch.rand(5, 3, 24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out, records = parse_spec(spec)(batch, torch.Generator().manual_seed(0))
    assert len({r.fixed_spec for r in records}) > 1  # the samples really got different levels
    if spec == "pink":  # noise: forward is the identity, so check the batch against its records' levels
        for i, r in enumerate(records):
            assert float((out[i] - batch[i]).std() * 255) == pytest.approx(r.level, rel=0.05)
        return
    for i, record in enumerate(records):
        assert torch.allclose(record.forward(batch[i]), out[i], atol=1e-10), record.fixed_spec
