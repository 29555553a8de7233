"""Per-operator statistics: each operator does what its level says, measured on the output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from restorekit.degrade import linear, parse_spec, parse_stage
from restorekit.degrade.blur import MBN_MOTION_PRESETS, disk_kernel, motion_taps, trajectory_kernel
from restorekit.degrade.linear import band_matrix, gaussian_kernel1d
from restorekit.degrade.masks import MEAN_COLOUR
from restorekit.degrade.tone import grey_mean


@pytest.fixture
def patch(astronaut) -> torch.Tensor:
    return astronaut[:, 100:196, 180:276].contiguous()  # 96x96 RGB


def run(spec: str, image: torch.Tensor, seed: int = 0):
    return parse_spec(spec).apply_one(image, seed)


# ------------------------------------------------------------------------------------------ blur


@pytest.mark.parametrize("width", [0.8, 1.3, 2.6, 3.0])
def test_gaussian_kernel_sums_to_one_and_has_the_named_width(width):
    kernel = gaussian_kernel1d(width)
    t = np.arange(len(kernel)) - len(kernel) // 2
    assert kernel.sum() == pytest.approx(1, abs=1e-12)
    assert math.sqrt((kernel * t**2).sum()) == pytest.approx(width, rel=0.01)  # sampled Gaussian: exact enough from 0.8 px
    matrix = band_matrix(tuple(kernel), 20)
    np.testing.assert_allclose(matrix.sum(axis=1), 1, atol=1e-12)  # replicate borders keep rows normalised


def test_gaussian_blur_equals_scipy_with_nearest_borders(patch):
    blurred, _ = run("blur:kind=gaussian,width=1.3", patch)
    reference = ndimage.gaussian_filter(patch.double().numpy(), sigma=(0, 1.3, 1.3), mode="nearest", radius=(0, 6, 6))
    np.testing.assert_allclose(blurred.numpy(), reference, atol=2e-6)


def test_zero_width_is_identity(patch):
    assert torch.allclose(run("blur:kind=gaussian,width=0", patch)[0], patch, atol=1e-6)


def test_disk_kernel_is_normalised_with_the_named_radius():
    for radius in (1.5, 3.0, 5.0):
        kernel = disk_kernel(radius)
        r = kernel.shape[0] // 2
        y, x = np.mgrid[-r : r + 1, -r : r + 1]
        assert kernel.sum() == pytest.approx(1)
        # A uniform disk of radius R has E[x² + y²] = R² / 2.
        assert math.sqrt(2 * (kernel * (x**2 + y**2)).sum()) == pytest.approx(radius, rel=0.05)


def imagenet_c_motion_blur(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """Hendrycks et al.'s numpy `_motion_blur` and `shift`, re-typed from the reference (HWC)."""

    def shift(image, dx, dy):
        if dx < 0:
            shifted = np.roll(image, shift=image.shape[1] + dx, axis=1)
            shifted[:, dx:] = shifted[:, dx - 1 : dx]
        elif dx > 0:
            shifted = np.roll(image, shift=dx, axis=1)
            shifted[:, :dx] = shifted[:, dx : dx + 1]
        else:
            shifted = image
        if dy < 0:
            shifted = np.roll(shifted, shift=image.shape[0] + dy, axis=0)
            shifted[dy:, :] = shifted[dy - 1 : dy, :]
        elif dy > 0:
            shifted = np.roll(shifted, shift=dy, axis=0)
            shifted[:dy, :] = shifted[dy : dy + 1, :]
        return shifted

    width = radius * 2 + 1
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    kernel = k / k.sum()
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    blurred = np.zeros_like(x, dtype=np.float64)
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if np.abs(dy) >= x.shape[0] or np.abs(dx) >= x.shape[1]:
            break
        blurred = blurred + kernel[i] * shift(x, dx, dy)
    return blurred


@pytest.mark.parametrize("angle", [-45.0, -12.5, 0.0, 30.0])
def test_motion_blur_matches_the_imagenet_c_reference(patch, angle):
    radius, sigma = MBN_MOTION_PRESETS[2]
    ours, record = run(f"blur:kind=motion,radius={radius},sigma={sigma},angle={angle}", patch.double())
    reference = imagenet_c_motion_blur(patch.double().permute(1, 2, 0).numpy(), radius, sigma, angle)
    np.testing.assert_allclose(ours.permute(1, 2, 0).numpy(), reference, atol=1e-12)
    assert sum(w for _, _, w in motion_taps(radius, sigma, angle, 96, 96)) == pytest.approx(1)


def test_motion_presets_resolve_to_mbn_pairs(patch):
    for seed in range(6):
        level = run("blur:kind=motion", patch, seed)[1].levels[0]
        assert (level["radius"], level["sigma"]) in MBN_MOTION_PRESETS and -45 <= level["angle"] <= 45


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("border", ["replicate", "zeros"])
def test_per_sample_sparse_kernels_on_the_cpu_fast_path_equal_the_torch_adds(patch, dtype, border):
    """The BLAS-axpy data path (CPU, no autograd) computes what the device-agnostic torch path does:
    one-sided motion lines, two-sided trajectories, a single tap and an empty kernel, a strided input."""
    batch = torch.stack([patch, patch.flip(-1), patch.flip(-2), patch.roll(17, -1)]).to(dtype)
    batch = batch.transpose(-1, -2)  # not contiguous: the fast path must read strides
    rng = np.random.default_rng(0)
    kernel = trajectory_kernel(rng, length=15, turn=0.3)
    centre = kernel.shape[0] // 2
    trajectory = [(int(r) - centre, int(c) - centre, float(kernel[r, c])) for r, c in zip(*np.nonzero(kernel))]
    taps = [motion_taps(7, 3.0, 30.0, 96, 96), trajectory, [(3, -5, 1.0)], []]
    fast = linear._correlate_taps_axpy(batch, taps, border)
    reference = linear._correlate_taps_torch(batch, taps, border)
    assert linear.correlate_taps(batch, taps, border).equal(fast)  # the dispatcher takes the fast path here
    assert torch.allclose(fast, reference, atol=1e-6 if dtype == torch.float32 else 1e-12)
    assert torch.equal(fast[3], torch.zeros_like(fast[3]))


def test_sparse_kernels_keep_openblas_threads_as_they_were(patch):
    """The fast path holds OpenBLAS to one thread only while it runs (it contends with torch's pool)."""
    from threadpoolctl import threadpool_info

    def openblas_threads():
        return sorted(lib["num_threads"] for lib in threadpool_info() if lib["internal_api"] == "openblas")

    before = openblas_threads()
    assert before, "SciPy's OpenBLAS is loaded (the fast path's BLAS)"
    linear.correlate_taps(patch[None], [motion_taps(5, 2.0, 10.0, 96, 96)])
    assert openblas_threads() == before


def test_sparse_kernels_stay_differentiable(patch):
    """With autograd on, the torch adds run (the fast path has no graph); their gradient is the
    transposed correlation, so the sum of the output's gradient w.r.t. the input is the kernel's sum."""
    x = patch[None].double().requires_grad_(True)
    out = linear.correlate_taps(x, [motion_taps(5, 2.0, 10.0, 96, 96)])
    out.sum().backward()
    assert x.grad is not None and x.grad.sum().item() == pytest.approx(96 * 96 * 3)


def test_trajectory_kernel_is_normalised_and_centred():
    kernel = trajectory_kernel(np.random.default_rng(0), length=15, turn=0.3)
    r = kernel.shape[0] // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    assert kernel.sum() == pytest.approx(1) and kernel.min() >= 0
    assert abs((kernel * x).sum()) < 0.5 and abs((kernel * y).sum()) < 0.5


def test_blurs_preserve_the_mean_of_a_flat_image():
    flat = torch.full((3, 40, 40), 0.4, dtype=torch.float64)
    for spec in ("blur:kind=gaussian,width=2", "blur:kind=disk,radius=3", "blur:kind=motion", "blur:kind=trajectory"):
        assert torch.allclose(run(spec, flat)[0], flat, atol=1e-12), spec


# ----------------------------------------------------------------------------------------- noise


def test_noise_var_is_scikit_image_variance(astronaut):
    noisy, record = run("noise:var=0.01", astronaut)
    assert float((noisy - astronaut).double().var()) == pytest.approx(0.01, rel=0.02)
    assert record.level is None or record.steps[0].levels["var"] == 0.01


def test_pink_noise_has_the_named_std_and_a_falling_spectrum(astronaut):
    noisy, _ = run("pink:scale=8", astronaut)
    noise = (noisy - astronaut).double()
    assert float(noise.std() * 255) == pytest.approx(8, rel=0.02)
    power = torch.fft.rfft2(noise).abs().square().mean(0)
    low, high = power[1:8, 1:8].mean(), power[200:256, 200:256].mean()
    assert low > 20 * high  # 1/f: far more power at low frequencies than white noise's flat spectrum


def test_quantization_noise_leaves_n_levels(patch):
    out, _ = run("quantize:levels=8", patch)
    assert len(torch.unique(out)) <= 8
    assert float((out - patch).abs().max()) <= 0.5 / 7 + 1e-6


def test_salt_and_pepper_flips_the_named_fraction(astronaut):
    out, _ = run("saltpepper:amount=0.05", astronaut)
    changed = out != astronaut
    assert float(changed.double().mean()) == pytest.approx(0.05 * (1 - 2 / 255), rel=0.1)
    assert set(torch.unique(out[changed]).tolist()) <= {0.0, 1.0}


# ----------------------------------------------------------------------------------------- masks


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_bernoulli_removal_ratio_within_one_percent(astronaut, ratio):
    image = 0.05 + 0.9 * astronaut  # no black pixels, so removed ones are exactly the zeros
    out, record = run(f"bernoulli:ratio={ratio}", image)
    removed = (out == 0).all(dim=0)
    assert float(removed.double().mean()) == pytest.approx(ratio, rel=0.01)
    assert torch.equal(removed, record.steps[0].state["mask"][0] == 0)  # one mask for all channels
    assert torch.equal(removed, (out == 0).any(dim=0))


def test_bernoulli_exact_mode_and_training_path(patch):
    _, record = run("bernoulli:ratio=75%,exact=true", patch)
    assert int((record.steps[0].state["mask"] == 0).sum()) == round(0.75 * 96 * 96)
    out, records = parse_spec("bernoulli:ratio=0.5")(patch[None].repeat(4, 1, 1, 1), torch.Generator().manual_seed(0))
    for r in records:
        assert float((r.steps[0].state["mask"] == 0).double().mean()) == pytest.approx(0.5, abs=0.03)


def test_square_hole_size_shift_and_fill(patch):
    patch = 0.05 + 0.9 * patch
    for seed in range(5):
        out, record = run("inpaint:kind=square,size=20", patch, seed)
        level = record.steps[0].levels
        assert -10 <= level["dx"] <= 10 and -10 <= level["dy"] <= 10
        hole = (out == 0).all(dim=0)
        rows, cols = torch.nonzero(hole, as_tuple=True)
        assert int(hole.sum()) == 400
        assert int(rows.min()) == 38 + level["dy"] and int(cols.min()) == 38 + level["dx"]
    centred, _ = run("inpaint:kind=square,size=20,shift=0,fill=mean", patch)
    assert torch.allclose(centred[:, 38:58, 38:58], torch.tensor(MEAN_COLOUR).view(3, 1, 1).expand(3, 20, 20))


@pytest.mark.parametrize("spec", ["inpaint:kind=text,font=10", "inpaint:kind=text,font=20", "inpaint:kind=scratch", "inpaint:kind=freeform"])
def test_drawn_masks_cover_part_of_the_image(patch, spec):
    out, record = run(spec, patch)
    covered = float((record.steps[0].state["mask"] == 0).double().mean())
    assert 0.002 < covered < 0.6
    assert torch.equal(out[:, record.steps[0].state["mask"][0] == 1], patch[:, record.steps[0].state["mask"][0] == 1])


def test_bigger_font_covers_more(patch):
    def coverage(font: int) -> float:
        return np.mean([float((run(f"inpaint:kind=text,font={font},lines=2", patch, s)[1].steps[0].state["mask"] == 0).double().mean()) for s in range(4)])

    assert coverage(20) > coverage(10)


# --------------------------------------------------------------------------------- weather, tone


def test_rain_only_brightens_with_streaks_of_the_named_length(patch):
    out, record = run("rain:density=0.01,length=35,angle=90,intensity=0.8", patch)
    assert bool((out >= patch - 1e-6).all())
    layer = record.steps[0].state["layer"][0]
    assert float(layer.max()) == pytest.approx(0.8)
    column = (layer > 0).double().sum(dim=0)  # vertical streaks: long runs down each column
    assert float(column.max()) >= 30


def test_haze_follows_the_scattering_model(patch):
    thin, record = run("haze:beta=0.05,airlight=0.9", patch)
    thick, _ = run("haze:beta=0.2,airlight=0.9", patch)
    t = record.steps[0].state["transmission"]
    assert torch.allclose(thin, patch * t + 0.9 * (1 - t), atol=1e-6)
    assert bool((t > 0).all() and (t <= 1).all())
    assert float((thick - 0.9).abs().mean()) < float((thin - 0.9).abs().mean())  # thicker haze: nearer A


def test_contrast_change_scales_deviations_from_mean_grey(patch):
    out, _ = run("contrast:level=30", patch)
    mean = grey_mean(patch[None])[0]
    assert torch.allclose(out - mean, 0.7 * (patch - mean), atol=1e-6)


def test_lowpass_removes_detail_and_keeps_size(patch):
    out, _ = run("lowpass:ratio=0.1", patch)
    assert out.shape == patch.shape
    detail = lambda img: float((img[:, 1:] - img[:, :-1]).abs().mean())  # noqa: E731
    assert detail(out) < 0.5 * detail(patch)


def test_nlm_smooths(patch):
    noisy = (patch + 0.05 * torch.randn(patch.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    out, _ = parse_stage("nlm:strength=0.08").apply(noisy[None], [parse_stage("nlm:strength=0.08").sample_level(None)], None)
    detail = lambda img: float((img[..., 1:] - img[..., :-1]).abs().mean())  # noqa: E731
    assert detail(out) < detail(noisy)


def test_nlm_batch_runs_in_threads_with_the_per_image_scikit_image_result(patch):
    """The batch goes through a thread pool as wide as torch's; each image is still exactly
    scikit-image's `denoise_nl_means(h, patch_size=7, patch_distance=11, fast_mode=True)`."""
    from skimage.restoration import denoise_nl_means

    small = patch[:, :40, :40]
    batch = torch.stack([small, small.flip(-1), small.flip(-2)])
    stage = parse_stage("nlm:strength=0.06")
    levels = [stage.sample_level(None)] * 3
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        threaded, _ = stage.apply(batch, levels, None)
        torch.set_num_threads(1)
        serial, _ = stage.apply(batch, levels, None)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(threaded, serial)
    for image, out in zip(batch, threaded):
        expected = denoise_nl_means(image.permute(1, 2, 0).numpy(), h=0.06, patch_size=7, patch_distance=11, channel_axis=-1, fast_mode=True)
        assert torch.equal(out, torch.from_numpy(expected).permute(2, 0, 1))


def test_host_exp_is_numpy_exp_for_cpu_data_and_torch_where_a_gradient_is_needed():
    """Haze, pink noise and per-sample Gaussian kernels take exp through numpy (reproducible from
    process to process); a tensor that needs a gradient keeps torch.exp and its graph."""
    from restorekit.degrade.operator import host_exp

    t = torch.linspace(-3, 1, 100_000)
    assert torch.equal(host_exp(t), torch.from_numpy(np.exp(t.numpy())))
    x = torch.linspace(-1, 0, 10, dtype=torch.float64, requires_grad=True)
    y = host_exp(x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.exp(x.detach()))


def test_up_and_decimate_shapes(patch):
    assert run("up:scale=2", patch)[0].shape == (3, 192, 192)
    dec, _ = run("down:scale=3,method=decimate,quantize=false", patch)
    assert torch.equal(dec, patch[:, ::3, ::3])
