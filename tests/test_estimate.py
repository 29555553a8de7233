"""Level estimation (issue 18 item 3): what `restore --level auto` and the page's "auto" box restore at."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from restorekit.degrade.spec import canonical_spec, parse_spec
from restorekit.errors import RestorekitError
from restorekit.estimate import (
    BLUR_CALIBRATION,
    auto_level,
    blur_width,
    clipped_std,
    edge_width,
    estimate_level,
    ijg_table,
    jpeg_quality,
    noise_sigma,
    pca_noise_sigma,
)


def _noisy(clean: np.ndarray, sigma: float, seed: int = 0) -> torch.Tensor:
    """A noisy file's pixels: clipped to [0, 255] and rounded (what any saved noisy image holds)."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(np.round(clean.astype(np.float64) + rng.normal(0, sigma, clean.shape)), 0, 255)
    return torch.from_numpy(noisy / 255).permute(2, 0, 1).float()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()[:192, :256]


def test_ijg_tables_are_libjpegs_scaling_of_annex_k():
    assert ijg_table(50).tolist()[:8] == [16, 11, 10, 16, 24, 40, 51, 61]  # quality 50 = the standard table
    assert ijg_table(100).max() == 1 and ijg_table(1).min() == 255  # q 100 all ones; q 1 baseline-clamped


@pytest.mark.parametrize("quality", [5, 10, 20, 37, 50, 75, 90, 95])
def test_jpeg_quality_is_read_exactly_from_a_pillow_file(astronaut, tmp_path, quality):
    path = tmp_path / "photo.jpg"
    Image.fromarray(astronaut).save(path, quality=quality)
    found = jpeg_quality(path)
    assert found.level == quality and "quantisation table" in found.method
    assert jpeg_quality(path.read_bytes()).level == quality  # an upload's bytes too


def test_a_png_has_no_jpeg_quality_to_read(astronaut, tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(astronaut).save(path)
    with pytest.raises(RestorekitError, match="photo.png: JPEG quality is read from a JPEG file's"):
        jpeg_quality(path)


@pytest.mark.parametrize("quality", [10, 30, 50, 75, 90])
def test_a_decoded_jpeg_saved_as_png_is_read_from_its_pixels(astronaut, tmp_path, quality):
    """Its 8x8 DCT coefficients sit on the quantisation table's lattice: the quality within 1 (tables of
    neighbouring qualities differ in a few rounded steps); --level auto on the PNG uses it."""
    jpeg, png = tmp_path / "photo.jpg", tmp_path / "photo.png"
    Image.fromarray(astronaut).save(jpeg, quality=quality)
    Image.open(jpeg).save(png)
    decoded = torch.from_numpy(np.asarray(Image.open(png))).permute(2, 0, 1).float() / 255
    found = estimate_level("jpeg", decoded, png)
    assert abs(found.level - quality) <= 1 and "DCT lattice" in found.method
    assert estimate_level("jpeg", decoded, jpeg).level == quality  # the file itself: exact, from its table


def test_pixels_without_a_jpeg_lattice_are_refused(astronaut):
    image = torch.from_numpy(astronaut).permute(2, 0, 1).float() / 255  # never compressed
    with pytest.raises(RestorekitError, match="no JPEG block lattice found"):
        estimate_level("jpeg", image, None)


def test_pca_estimator_finds_the_noise_of_unclipped_gaussian_noise(astronaut):
    """Chen et al. 2015: the smallest eigenvalues of the patch covariance are the noise variance."""
    rng = np.random.default_rng(1)
    for sigma in (5, 20, 40):
        noisy = astronaut.astype(np.float64) + rng.normal(0, sigma, astronaut.shape)
        assert abs(pca_noise_sigma(noisy) - sigma) < 0.08 * sigma + 0.5


def test_clipping_correction_recovers_what_clipping_hides(astronaut):
    """A clipped Gaussian has a smaller spread; sigma 50 on this image reads several units low uncorrected."""
    noisy = _noisy(astronaut, 50)
    raw, corrected = noise_sigma(noisy, clipped=False), noise_sigma(noisy)
    assert raw < 47 and abs(corrected - 50) < abs(raw - 50) and abs(corrected - 50) < 3
    assert clipped_std(np.array([127.5]), 1.0) == pytest.approx(1.0, abs=1e-6)  # far from the bounds: unchanged
    assert clipped_std(np.array([0.0]), 10.0) < 6  # at a bound: half the mass piles up there


def test_noise_estimates_are_close_at_usual_levels(astronaut):
    for sigma in (10, 25):
        assert abs(noise_sigma(_noisy(astronaut, sigma)) - sigma) < 1.5


def test_auto_level_clamps_to_the_models_range_and_says_so(astronaut):
    level, note = auto_level("denoise", _noisy(astronaut, 5), level_range=(15.0, 75.0))
    assert level == 15.0 and "estimated denoise level" in note and "outside the model's 15-75: using 15" in note
    with pytest.raises(RestorekitError, match="level 'auto' is estimated for denoise, jpeg, sr, deblur, not for inpaint"):
        estimate_level("inpaint", torch.rand(3, 32, 32))


def test_an_upload_jpeg_is_estimated_from_its_bytes(astronaut):
    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, format="JPEG", quality=30)
    image = torch.rand(3, 16, 16)
    assert auto_level("jpeg", image, buffer.getvalue(), (10.0, 80.0))[0] == 30


def _squares(side: int = 160, block: int = 32) -> torch.Tensor:
    """Large black and white squares: straight step edges whose blur is known exactly."""
    rows = (np.arange(side) // block) % 2
    return torch.from_numpy((rows[:, None] ^ rows[None, :]).astype(np.float64)).float()[None]


def test_edge_width_reads_the_gaussian_width_of_step_edges_whatever_their_contrast():
    """Hu & de Haan's principle: a re-blur of width p lowers a step edge's peak gradient by sqrt(w^2 + p^2) / w.
    The derivative filter adds its own fixed width d (w_read^2 = w^2 + d^2, d ~ 0.75 px), which the
    calibration's w0 absorbs; the contrast changes nothing."""
    from scipy.ndimage import gaussian_filter

    excess = []
    for width in (1.0, 2.0, 3.0):
        reads = [edge_width(torch.from_numpy(gaussian_filter(_squares()[0].double().numpy() * c, width)).float()[None])
                 for c in (1.0, 0.2)]
        assert reads[0] == pytest.approx(reads[1], rel=1e-6)
        excess.append(reads[0] ** 2 - width**2)
    assert 0.3 < min(excess) and max(excess) < 0.8 and max(excess) - min(excess) < 0.15


def _sr_input(image: np.ndarray, width: float, scale: int = 2) -> torch.Tensor:
    """DL-Net's blurred SR input at blur width `width` (the sr task's canonical degradation), rounded to 8 bits."""
    clean = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    out, _ = parse_spec(canonical_spec("sr", level=width, scale=scale)).apply_one(clean, 0)
    return (out.clamp(0, 1) * 255).round() / 255


def test_blur_width_before_an_x2_downscale_is_found_on_a_photo(astronaut):
    """Calibrated on T91 + BSD200 (scripts/level_estimation.py --only blur-fit); on a photo it never saw, the
    estimate rises with u and is within 0.6 px from u = 1.5 up (docs/BENCHMARKS.md "Level estimation")."""
    found = [blur_width(_sr_input(astronaut, u), 2) for u in (0.5, 1.5, 2.5)]
    assert found == sorted(found)
    assert found[1] == pytest.approx(1.5, abs=0.6) and found[2] == pytest.approx(2.5, abs=0.6)
    level, note = auto_level("sr", _sr_input(astronaut, 2.5), level_range=(0.0, 3.0), scale=2)
    assert level == pytest.approx(2.5, abs=0.6) and "before the x2 downscale" in note


def test_blur_width_refuses_an_uncalibrated_scale_and_a_flat_image():
    assert set(BLUR_CALIBRATION) == {1, 2, 3, 4}
    with pytest.raises(RestorekitError, match="not x8"):
        blur_width(torch.rand(3, 32, 32), 8)
    with pytest.raises(RestorekitError, match="no edges"):
        blur_width(torch.full((3, 32, 32), 0.5), 2)
