"""MATLAB-faithful resize and colour conversion (field-conventions 4.2-4.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit import ops


def test_resize_matrix_rows_sum_to_one_and_mirror_borders():
    for in_len, out_len, scale in [(12, 6, 0.5), (10, 30, 3.0), (9, 3, 1 / 3), (7, 5, 5 / 7)]:
        m = ops.resize_matrix(in_len, out_len, scale)
        assert m.shape == (out_len, in_len)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)


def test_bicubic_upscale_reproduces_linear_ramps_away_from_borders():
    # The a=-0.5 cubic kernel reproduces polynomials of degree <= 2 exactly (Keys 1981).
    ramp = np.tile(np.linspace(0, 1, 20), (20, 1))
    up = ops.imresize(ramp, 2)
    x = (np.arange(40) + 1) / 2 + 0.25 - 1  # MATLAB's sampling positions, 0-based
    expected = x / 19
    np.testing.assert_allclose(up[10, 4:-4], expected[4:-4], atol=1e-12)


def test_downscale_antialiases_unlike_plain_subsampling():
    stripes = np.zeros((16, 16))
    stripes[:, ::2] = 1.0  # Nyquist-frequency stripes
    low = ops.downscale(stripes, 2)
    assert low.shape == (8, 8)
    # MATLAB's antialiased kernel averages the stripes to about grey; plain bicubic would alias them.
    assert np.abs(low[2:-2, 2:-2] - 0.5).max() < 0.05


def test_numpy_and_batched_torch_agree():
    rng = np.random.default_rng(0)
    image = rng.random((2, 3, 21, 30))
    for scale in (0.5, 1 / 3, 2, 3, 0.37):
        t = ops.imresize(torch.from_numpy(image), scale)
        for b in range(2):
            n = ops.imresize(image[b].transpose(1, 2, 0), scale)
            np.testing.assert_allclose(t[b].numpy().transpose(1, 2, 0), n, atol=1e-12)


def test_output_sizes_follow_matlab_ceil():
    image = np.zeros((510, 333))
    assert ops.imresize(image, 1 / 3).shape == (170, 111)
    assert ops.imresize(image, size=(100, 50)).shape == (100, 50)
    with pytest.raises(ValueError, match="modcrop"):
        ops.downscale(np.zeros((10, 10)), 3)


def test_modcrop_and_shave():
    image = np.zeros((101, 57, 3))
    assert ops.modcrop(image, 4).shape == (100, 56, 3)
    assert ops.modcrop(torch.zeros(3, 101, 57), 12).shape == (3, 96, 48)
    assert ops.shave(torch.zeros(1, 10, 12), 3).shape == (1, 4, 6)


@pytest.mark.data
def test_our_x4_downscale_of_set5_matches_the_released_lr_images(data_dir):
    """Acceptance: within 2 grey levels everywhere, mean absolute difference under 0.5."""
    for scale in (2, 3, 4):
        for hr_path in sorted((data_dir / "test" / "Set5").glob("*.png")):
            hr = np.asarray(Image.open(hr_path).convert("RGB"), dtype=np.float64) / 255
            ours = np.round(np.clip(ops.downscale(ops.modcrop(hr, scale), scale), 0, 1) * 255)
            ref_path = data_dir / "lr" / "Set5" / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
            ref = np.asarray(Image.open(ref_path).convert("RGB"), dtype=np.float64)
            diff = np.abs(ours - ref)
            assert diff.max() <= 2, (hr_path.name, scale, diff.max())
            assert diff.mean() < 0.5, (hr_path.name, scale, diff.mean())


def test_rgb2ycbcr_matches_matlab_golden_values():
    # MATLAB: rgb2ycbcr(uint8([255 0 0])) = [81 90 240]; white -> [235 128 128]; black -> [16 128 128].
    pixels = np.array([[[1.0, 0, 0], [1, 1, 1], [0, 0, 0]]])
    ycc = ops.rgb2ycbcr(pixels, rounding=True) * 255
    np.testing.assert_array_equal(ycc[0], [[81, 90, 240], [235, 128, 128], [16, 128, 128]])
    np.testing.assert_allclose(ops.rgb2ycbcr(pixels)[0, 0] * 255, [81.481, 90.203, 240.0], atol=1e-9)


def test_ycbcr_round_trip_and_no_input_mutation():
    rng = np.random.default_rng(1)
    rgb = rng.random((5, 7, 3))
    before = rgb.copy()
    back = ops.ycbcr2rgb(ops.rgb2ycbcr(rgb))
    np.testing.assert_allclose(back, rgb, atol=1e-12)
    np.testing.assert_array_equal(rgb, before)  # pitfall 4.5.5: in-place `img *= 255`
    t = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
    np.testing.assert_allclose(ops.rgb2y(t).numpy(), ops.rgb2y(rgb), atol=1e-12)


def test_quantize_round_versus_trunc():
    x = torch.tensor([0.5 / 255 + 1e-6, 1.7 / 255, 1.2, -0.1], dtype=torch.float64)
    assert (ops.quantize(x, "round") * 255).tolist() == [1, 2, 255, 0]
    assert (ops.quantize(x, "trunc") * 255).tolist() == [0, 1, 255, 0]
