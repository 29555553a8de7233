"""Metric switches and golden values (field-conventions 4.3-4.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from restorekit import metrics, ops
from restorekit.errors import MissingPackage


def _pair(seed=0, shape=(48, 40, 3)):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, shape) / 255
    noisy = np.clip(clean + rng.normal(0, 10 / 255, shape), 0, 1)
    return noisy, clean


def test_psnr_of_a_known_error():
    clean = np.full((16, 16), 100 / 255)
    assert metrics.psnr(clean + 1 / 255, clean) == pytest.approx(10 * math.log10(255**2), abs=1e-9)
    assert metrics.psnr(clean, clean) == math.inf


def test_crop_border_ignores_the_frame():
    clean = np.full((20, 20, 3), 0.5)
    out = clean.copy()
    out[:2] = 0  # error only in the 2-pixel frame
    assert metrics.psnr(out, clean, crop_border=2) == math.inf
    assert metrics.psnr(out, clean, crop_border=1) < 20


def test_truncation_biases_psnr_down():
    # Pitfall 4.5.1: astype(uint8) truncation costs about 0.1-0.2 dB against rounding.
    noisy, clean = _pair()
    out = clean + 0.4 / 255  # rounds back to clean, truncates too
    assert metrics.psnr(out, clean, quantize="round") == math.inf
    out = clean + 0.6 / 255
    assert metrics.psnr(out, clean, quantize="trunc") == math.inf
    assert metrics.psnr(out, clean, quantize="round") < 60


def test_opencv_luma_is_1_32_db_below_matlab_luma():
    # Studio swing scales differences by 219/255, so OpenCV's full-range Y-PSNR is lower by
    # 20*log10(255/219) = 1.32 dB (field-conventions 4.3).
    noisy, clean = _pair()
    kwargs = dict(y_channel=True, quantize=None)
    gap = metrics.psnr(noisy, clean, **kwargs) - metrics.psnr(noisy, clean, y_formula="opencv", **kwargs)
    assert gap == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)


def test_y_channel_only_for_colour_images():
    # A grey image (Set14's bridge) is compared on its grey values, as MATLAB's scripts do.
    noisy, clean = _pair(shape=(30, 30))
    assert metrics.psnr(noisy, clean, y_channel=True) == metrics.psnr(noisy, clean, y_channel=False)


def test_ssim_matches_wangs_definition_via_scikit_image():
    noisy, clean = _pair(shape=(64, 56))
    ours = metrics.ssim(noisy, clean)
    reference = structural_similarity(
        np.round(noisy * 255), np.round(clean * 255), data_range=255,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    assert ours == pytest.approx(reference, abs=1e-9)
    assert metrics.ssim(clean, clean) == pytest.approx(1.0)


def test_batched_torch_matches_single_numpy():
    pairs = [_pair(seed) for seed in range(3)]
    out = torch.from_numpy(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2))
    ref = torch.from_numpy(np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2))
    proto = metrics.Protocol(y_channel=True, crop_border=4)
    batch = metrics.psnr_batch(out, ref, proto)
    singles = [metrics.psnr(a, b, y_channel=True, crop_border=4) for a, b in pairs]
    np.testing.assert_allclose(batch.numpy(), singles, atol=1e-10)
    np.testing.assert_allclose(
        metrics.ssim_batch(out, ref, proto).numpy(),
        [metrics.ssim(a, b, y_channel=True, crop_border=4) for a, b in pairs], atol=1e-10,
    )


def test_psnr_b_penalises_blocking_only():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64] / 64
    clean = 0.2 + 0.3 * xx + 0.3 * yy  # smooth, so flattened 8x8 blocks show as block edges
    smooth_error = np.clip(clean + rng.normal(0, 5 / 255, clean.shape), 0, 1)
    blocky = clean.copy()
    for i in range(0, 64, 8):
        for j in range(0, 64, 8):
            blocky[i:i + 8, j:j + 8] = clean[i:i + 8, j:j + 8].mean()  # flat 8x8 blocks: strong block edges
    assert metrics.psnr_b(blocky, clean) < metrics.psnr(blocky, clean) - 0.1
    assert metrics.psnr_b(smooth_error, clean) == pytest.approx(metrics.psnr(smooth_error, clean), abs=0.05)


def test_l1_l2_in_the_minus_one_to_one_range():
    a, b = np.full((4, 4), 0.75), np.full((4, 4), 0.25)
    assert metrics.l1_pm1(a, b) == pytest.approx(1.0)  # 2 * 0.5
    assert metrics.l2_pm1(a, b) == pytest.approx(1.0)  # (2 * 0.5) ** 2


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(np.zeros((4, 4)), np.zeros((4, 5)))


def test_inputs_are_not_mutated():
    noisy, clean = _pair()
    before = noisy.copy()
    metrics.psnr(noisy, clean, y_channel=True)
    np.testing.assert_array_equal(noisy, before)
    assert ops.quantize(noisy) is not noisy


def test_piqe_ranks_a_blurred_and_a_noisy_photo_below_the_clean_one():
    """PIQE (MATLAB's `piqe`, 0 best .. 100): the no-reference measure reported for the GAN model (PCARN-M),
    whose PSNR says little. Measured on astronaut: clean 32.1, x4 bicubic blur 88.9, noise sigma 25 56.2."""
    pytest.importorskip("pypiqe", reason="optional: pip install 'restorekit[perceptual]'")
    from skimage import data as skimage_data

    clean = skimage_data.astronaut().astype(np.float64) / 255
    small = ops.downscale(clean, 4)
    blurred = np.clip(ops.upscale(small, 4), 0, 1)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape), 0, 1)
    scores = {name: metrics.piqe(image) for name, image in (("clean", clean), ("blurred", blurred), ("noisy", noisy))}
    assert scores["clean"] < scores["noisy"] < scores["blurred"], scores
    assert 0 <= scores["clean"] <= 100


def test_an_unknown_or_absent_no_reference_measure_fails_in_one_line(monkeypatch):
    import builtins

    with pytest.raises(ValueError, match="unknown no-reference measure 'niqe'; choose from: piqe"):
        metrics.require_no_reference("niqe")
    real_import = builtins.__import__

    def no_pypiqe(name, *args, **kwargs):
        if name == "pypiqe":
            raise ImportError("absent")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pypiqe)
    with pytest.raises(MissingPackage, match=r"pip install 'restorekit\[perceptual\]'"):
        metrics.require_no_reference("piqe")
