"""Training data: folder layouts, paired folders, the decoded-image cache, patches, on-the-fly degradation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from restorekit.data.datasets import Level, PatchDataset, degrade_batch, degrade_one
from restorekit.data.samplers import SampleKey, StepBatchSampler, StepPlan, build_strategy, mix_seed
from restorekit.data.sources import (
    find_clean_images,
    load_folder,
    load_skimage,
    synthesize,
    to_channels,
)
from restorekit.degrade import parse_spec
from restorekit.errors import RestorekitError


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["plain", "HR", "GTmod12", "div2k", "selfexsr"])
def test_clean_images_are_found_in_every_usual_layout(tmp_path, rgb, layout):
    paths = {
        "plain": ["b.png", "a.png"],
        "HR": ["HR/b.png", "HR/a.png", "LR_bicubic/X2/ax2.png"],
        "GTmod12": ["GTmod12/b.png", "GTmod12/a.png", "LRbicx2/a.png"],
        "div2k": ["DIV2K_train_HR/b.png", "DIV2K_train_HR/a.png", "DIV2K_train_LR_bicubic/X2/ax2.png"],
        "selfexsr": ["image_SRF_2/a_SRF_2_HR.png", "image_SRF_2/a_SRF_2_LR.png", "image_SRF_2/b_SRF_2_HR.png",
                     "image_SRF_4/a_SRF_4_HR.png"],
    }[layout]
    for rel in paths:
        save(tmp_path / rel, rgb)
    found = [p.relative_to(tmp_path).as_posix() for p in find_clean_images(tmp_path)]
    expected = {"plain": ["a.png", "b.png"], "HR": ["HR/a.png", "HR/b.png"], "GTmod12": ["GTmod12/a.png", "GTmod12/b.png"],
                "div2k": ["DIV2K_train_HR/a.png", "DIV2K_train_HR/b.png"],
                "selfexsr": ["image_SRF_2/a_SRF_2_HR.png", "image_SRF_2/b_SRF_2_HR.png"]}[layout]
    assert found == expected


def test_paired_folders_match_by_name_and_detect_the_scale(tmp_path, rgb):
    save(tmp_path / "clean" / "1.png", rgb)
    save(tmp_path / "degraded" / "1.jpg", rgb[::2, ::2].copy())
    images = load_folder(tmp_path)
    assert images.paired and images.scale == 2 and images.names == ["1.png"]
    assert images.degraded[0].shape == (15, 20, 3) and images.clean[0].dtype == np.uint8
    save(tmp_path / "clean" / "2.png", rgb)
    with pytest.raises(RestorekitError, match="no partner for clean/2.png"):  # issue 13, finding 6: never silent
        load_folder(tmp_path)


def test_the_cache_holds_decoded_uint8_images_with_the_wanted_channels(tmp_path, rgb):
    save(tmp_path / "a.png", rgb)
    grey = load_folder(tmp_path, channels=1)
    assert grey.clean[0].shape == (30, 40, 1) and grey.clean[0].dtype == np.uint8
    expected = np.rint(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    assert np.abs(grey.clean[0][..., 0].astype(int) - expected).max() <= 1  # PIL/OpenCV full-range luma
    assert to_channels(grey.clean[0], 3).shape == (30, 40, 3)
    samples = load_skimage(["camera", "astronaut"], channels=3)
    assert [a.shape for a in samples.clean] == [(512, 512, 3), (512, 512, 3)]
    with pytest.raises(RestorekitError, match="unknown scikit-image sample"):
        load_skimage(["lena"])


def test_synthetic_images_are_deterministic_and_varied():
    a, b = synthesize(3, 32, 3, seed=1), synthesize(3, 32, 3, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a.clean, b.clean))
    assert not np.array_equal(a.clean[0], a.clean[1])
    assert all(x.std() > 10 for x in a.clean)  # edges and texture, not flat


def make_dataset(**kwargs):
    images = synthesize(4, 64, 1, seed=0)
    pipe = parse_spec("noise:sigma=0..50")
    levels = [Level("noise", "noise:sigma=0..50", 0, 24, pipe)]
    return PatchDataset([images], levels, **kwargs), images


def test_a_sample_is_a_pure_function_of_its_key():
    dataset, images = make_dataset()
    key = SampleKey(level=0, source=0, image=2, seed=12345)
    a, b = dataset[key], dataset[key]
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["hq"], b["hq"]) and a["level"] == 0
    assert a["hq"].shape == (1, 24, 24) and a["lq"].shape == (1, 24, 24)
    assert not torch.equal(a["lq"], a["hq"])  # degraded on the fly
    other = dataset[SampleKey(0, 0, 2, 12346)]
    assert not torch.equal(other["hq"], a["hq"]) or not torch.equal(other["lq"], a["lq"])
    # The clean patch is a crop of the cached image under one of the 8 flips/rotations.
    full = torch.from_numpy(images.clean[2]).permute(2, 0, 1).float() / 255
    views = [torch.rot90(full.flip(-1) if c & 1 else full, c >> 1, dims=(-2, -1)) for c in range(8)]
    found = any(
        torch.equal(v[:, y:y + 24, x:x + 24], a["hq"]) for v in views for y in range(41) for x in range(41))
    assert found


def test_flips_and_rotations_follow_the_config():
    dataset, _ = make_dataset(flip=False, rot=False)
    assert {dataset.dihedral_code(mix_seed(i)) for i in range(50)} == {0}
    dataset.flip = True
    assert {dataset.dihedral_code(mix_seed(i)) for i in range(50)} == {0, 1}
    dataset.flip, dataset.rot = False, True
    assert {dataset.dihedral_code(mix_seed(i)) for i in range(80)} == {0, 2, 4, 6}
    dataset.flip = True
    assert {dataset.dihedral_code(mix_seed(i)) for i in range(200)} == set(range(8))


def test_per_sample_levels_are_sampled_from_the_range():
    pipe = parse_spec("noise:sigma=0..50")
    clean = torch.full((1, 48, 48), 0.5)
    stds = [float((degrade_one(pipe, clean, seed) - clean).std()) * 255 for seed in range(40)]
    assert 0 <= min(stds) < 15 and 35 < max(stds) <= 52
    assert degrade_one(pipe, clean, 3).equal(degrade_one(pipe, clean, 3))


def test_batched_degradation_on_the_device_uses_each_samples_level():
    pipes = [parse_spec("noise:sigma=5"), parse_spec("noise:sigma=50"), None]
    clean = torch.full((6, 1, 32, 32), 0.5)
    levels = torch.tensor([0, 1, 2, 0, 1, 2])
    out = degrade_batch(pipes, clean, levels, torch.Generator().manual_seed(0))
    stds = ((out - clean).flatten(1).std(1) * 255).tolist()
    assert stds[0] < 8 and stds[3] < 8 and stds[1] > 40 and stds[4] > 40 and stds[2] == stds[5] == 0


def test_paired_patches_are_aligned_across_scales(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    save(tmp_path / "degraded" / "x.png", small)
    save(tmp_path / "clean" / "x.png", small.repeat(2, 0).repeat(2, 1))  # 2x2 blocks: any flip keeps alignment
    images = load_folder(tmp_path)
    dataset = PatchDataset([images], [Level("pairs", None, 0, 32)], scale=2)
    for seed in range(10):
        sample = dataset[SampleKey(0, 0, 0, seed)]
        assert sample["lq"].shape == (1, 16, 16) and sample["hq"].shape == (1, 32, 32)
        assert torch.equal(sample["hq"][:, ::2, ::2], sample["lq"])  # the same region, flipped/rotated alike


def test_dataloader_with_workers_gives_the_same_batches_as_without():
    dataset, images = make_dataset()
    plan = StepPlan(build_strategy("rigid_joint", 1), [0], [len(images)], batch_size=8, seed=0)

    def batches(workers):
        loader = DataLoader(dataset, batch_sampler=StepBatchSampler(plan, 3, 7), num_workers=workers)
        return [b["lq"] for b in loader]

    serial, parallel = batches(0), batches(2)
    assert len(serial) == 4 and all(torch.equal(a, b) for a, b in zip(serial, parallel))
    # A rank's half of the batch is exactly that half of the single-process batch.
    half = next(iter(DataLoader(dataset, batch_sampler=StepBatchSampler(plan, 3, 4, rank=1, world=2))))["lq"]
    assert torch.equal(half, serial[0][4:])
