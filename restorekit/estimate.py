"""Degradation levels estimated from the image alone: what `restore --level auto` and the page's "auto" use.

One estimator per task (`ESTIMATORS`, keyed by the task names of `restorekit.tasks`); each returns an
`Estimate` that says how the level was found, so the output can tell the user. Exact where the file says it
(JPEG quality from the quantisation tables), a measured classical estimator otherwise:

* `denoise`: the noise sigma by Chen, Zhu & Heng (ICCV 2015, "An efficient statistical method for image noise
  level estimation"): the eigenvalues of the covariance of 8x8(xC) patches; the smallest ones belong to the
  noise, found as the largest set whose mean equals its median. Real noisy files are clipped to [0, 255],
  which lowers the variance where the image is dark or bright (sigma 50 reads ~44 on CBSD68): the estimate is
  corrected by matching the variance a clipped Gaussian of sigma would show around each local mean. Measured by
  `scripts/level_estimation.py` (docs/BENCHMARKS.md "Level estimation").
* `jpeg`: the quality whose IJG-scaled standard luminance table equals the file's (Pillow, libjpeg, OpenCV and
  MATLAB all scale the Annex K tables this way); exact for such files, the nearest table otherwise. An image
  that is not a JPEG file (a PNG of a decoded JPEG, an upload of pixels) is read from its pixels: the 8x8 block
  DCT coefficients of a decoded JPEG sit near multiples of the quantisation steps, and the quality whose table
  they fit best is taken (`jpeg_quality_from_pixels`; exact or +-1 on LIVE1, docs/BENCHMARKS.md); an image with
  no such lattice (never compressed, or cropped / resized since) is refused with that reason.
* `sr` / `deblur`: the Gaussian blur width u (the SR task's level is the blur before the downscale, DL-Net's
  blurred SR). At each of the strongest edges, the peak gradient falls by sqrt(w^2 + p^2) / w under a re-blur
  of known width p, which gives the edge's width w free of its contrast (the gradient-ratio idea of Hu & de
  Haan, "Low cost robust blur estimator", ICIP 2006); the median w maps to u through w^2 = w0^2 + (k u)^2,
  (w0, k) fitted per scale on training images (`BLUR_CALIBRATION`). w0 is how sharp a natural image's own
  edges are, which varies from image to image: small widths (u < 1) are read coarsely (docs/BENCHMARKS.md).

Pure functions of the pixels (and, for JPEG, of the file's header); the CLI prints and records the estimates.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.fft import dctn
from scipy.ndimage import gaussian_filter, maximum_filter, sobel, uniform_filter
from scipy.optimize import brentq
from scipy.stats import norm

from restorekit import ops
from restorekit.errors import RestorekitError

PATCH = 8  # Chen et al.'s patch side
MAX_PATCHES = 60_000  # patches on a regular grid, enough for a stable covariance (~0.3 s on a 481x321 image)
LOCAL_MEAN = 9  # window of the local means the clipping correction models the noise around


@dataclass(frozen=True)
class Estimate:
    """A level and how it was found (shown beside the output and written to the --json report)."""

    level: float
    method: str

    def describe(self, task: str) -> str:
        return f"estimated {task} level {self.level:.4g} ({self.method})"


def patch_matrix(image: np.ndarray, patch: int = PATCH, max_patches: int = MAX_PATCHES) -> np.ndarray:
    """(N, patch*patch*C) patches of an HxWxC array on the densest regular grid giving at most `max_patches`."""
    height, width = image.shape[:2]
    rows, cols = height - patch + 1, width - patch + 1
    if rows < 1 or cols < 1:
        raise RestorekitError(f"the image ({height}x{width}) is smaller than a {patch}x{patch} patch")
    stride = max(1, int(np.ceil(np.sqrt(rows * cols / max_patches))))
    windows = np.lib.stride_tricks.sliding_window_view(image, (patch, patch), axis=(0, 1))[::stride, ::stride]
    return windows.reshape(-1, windows.shape[2] * patch * patch)


def pca_noise_sigma(image: np.ndarray, patch: int = PATCH) -> float:
    """Chen et al. 2015 on an HxWxC array (any scale): sqrt of the mean of the smallest covariance eigenvalues,
    the largest set of them whose mean is its median."""
    patches = patch_matrix(image.astype(np.float64), patch)
    patches = patches - patches.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh(patches.T @ patches / len(patches))  # ascending
    for keep in range(len(eigenvalues), 0, -1):
        tail = eigenvalues[:keep]
        tau = tail.mean()
        if np.sum(tail > tau) == np.sum(tail < tau):
            return float(np.sqrt(max(tau, 0.0)))
    return float(np.sqrt(max(eigenvalues[0], 0.0)))


def clipped_std(mean: np.ndarray, sigma: float, low: float = 0.0, high: float = 255.0) -> float:
    """The standard deviation of clip(N(mean, sigma^2), low, high), pooled over the given means."""
    a, b = (low - mean) / sigma, (high - mean) / sigma
    cdf_a, cdf_b, pdf_a, pdf_b = norm.cdf(a), norm.cdf(b), norm.pdf(a), norm.pdf(b)
    inside = cdf_b - cdf_a
    first = mean * inside + sigma * (pdf_a - pdf_b) + low * cdf_a + high * (1 - cdf_b)
    second = ((mean**2 + sigma**2) * inside + 2 * mean * sigma * (pdf_a - pdf_b)
              + sigma**2 * (a * pdf_a - b * pdf_b) + low**2 * cdf_a + high**2 * (1 - cdf_b))
    return float(np.sqrt(np.mean(second - first**2)))


def unclip_sigma(image: np.ndarray, observed: float) -> float:
    """The sigma whose clipped noise around the image's local means shows `observed` (0-255 scale)."""
    means = uniform_filter(image.astype(np.float64), size=(LOCAL_MEAN, LOCAL_MEAN, 1))[::4, ::4].ravel()
    if observed <= 0 or clipped_std(means, observed) >= observed:
        return observed
    upper = observed
    while clipped_std(means, upper) < observed:  # widen until the root is bracketed
        upper *= 2
        if upper > 1e4:
            return observed
    return float(brentq(lambda s: clipped_std(means, s) - observed, observed, upper, xtol=1e-3))


def noise_sigma(image: torch.Tensor, clipped: bool = True) -> float:
    """Gaussian noise sigma on the 0-255 scale of a CxHxW image in [0, 1]; `clipped`: the values were clipped
    to [0, 1] (any noisy image file)."""
    array = image.detach().float().cpu().permute(1, 2, 0).numpy() * 255.0
    observed = pca_noise_sigma(array)
    return unclip_sigma(array, observed) if clipped else observed


# The IJG standard luminance quantisation table (JPEG Annex K.1), row-major.
LUMINANCE_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def ijg_table(quality: int) -> np.ndarray:
    """libjpeg's `jpeg_quality_scaling`: the standard table scaled for quality 1..100, baseline-clamped."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((LUMINANCE_TABLE * scale + 50) // 100, 1, 255)


Source = str | os.PathLike[str] | bytes  # an image file, or its bytes (an upload)


def jpeg_quality(source: Source) -> Estimate:
    """The IJG quality of a JPEG file (path or bytes) from its luminance quantisation table."""
    path = "the upload" if isinstance(source, bytes) else source
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            tables = getattr(image, "quantization", None) if image.format == "JPEG" else None
    except OSError as err:
        raise RestorekitError(f"{path}: cannot read ({err})") from None
    if not tables:
        raise RestorekitError(f"{path}: JPEG quality is read from a JPEG file's quantisation tables, and this is "
                              f"not a JPEG file; give --level")
    luminance = np.asarray(tables[min(tables)], dtype=np.int64)
    errors = [float(np.abs(ijg_table(q) - luminance).mean()) for q in range(1, 101)]
    best = int(np.argmin(errors)) + 1
    exact = errors[best - 1] == 0
    return Estimate(float(best), "from the file's quantisation table" + ("" if exact else
                    f", nearest IJG table (mean difference {errors[best - 1]:.2g})"))


# A decoded JPEG's 8x8 block DCT coefficients (of JPEG's Y, level-shifted, orthonormal: JPEG's own DCT) sit near
# integer multiples of the quantisation steps, blurred only by the 8-bit rounding of the decoded pixels.
LATTICE_MIN_STEP = 3  # steps of 1-2 are hidden by that rounding noise
LATTICE_MIN_COEFFICIENTS = 20  # a frequency with fewer clearly nonzero coefficients says nothing
LATTICE_FOUND = 0.5  # the best table's mean cos(2 pi c / q); a never-compressed image scores about 0


def block_dct(image: torch.Tensor) -> np.ndarray:
    """(blocks, 64) DCT coefficients of the 8x8 blocks of JPEG's luma (BT.601 full range, minus 128), grid at 0, 0."""
    rgb = image.detach().double().cpu().numpy() * 255.0
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] if rgb.shape[0] >= 3 else rgb[0]
    height, width = (luma.shape[0] // 8) * 8, (luma.shape[1] // 8) * 8
    blocks = (luma[:height, :width] - 128.0).reshape(height // 8, 8, width // 8, 8).transpose(0, 2, 1, 3)
    return dctn(blocks.reshape(-1, 8, 8), axes=(1, 2), norm="ortho").reshape(-1, 64)


def lattice_score(coefficients: np.ndarray, table: np.ndarray) -> float | None:
    """How well the coefficients sit on the table's lattice: the mean over frequencies (steps >= 3) of
    mean cos(2 pi c / q) over the coefficients that are clearly nonzero at that step (|c| > q / 2). cos, not
    |mean exp|: a table with twice the true steps puts odd multiples at phase pi and must score low."""
    scores = []
    for k in np.flatnonzero(table >= LATTICE_MIN_STEP):
        values = coefficients[:, k][np.abs(coefficients[:, k]) > table[k] / 2]
        if len(values) >= LATTICE_MIN_COEFFICIENTS:
            scores.append(float(np.cos(2 * np.pi * values / table[k]).mean()))
    return float(np.mean(scores)) if scores else None


def jpeg_quality_from_pixels(image: torch.Tensor) -> Estimate:
    """The IJG quality of a decoded JPEG from its pixels alone (a PNG of it, an upload without its file): the
    quality whose scaled standard table the block DCT coefficients sit on best. Assumes the 8x8 grid starts at
    the top-left corner (not cropped or resized since); an image showing no lattice is refused."""
    coefficients = block_dct(image)
    scores = {q: lattice_score(coefficients, ijg_table(q)) for q in range(1, 101)}
    scored = {q: v for q, v in scores.items() if v is not None}
    best = max(scored, key=scored.get) if scored else None
    if best is None or scored[best] < LATTICE_FOUND:
        raise RestorekitError("no JPEG block lattice found in the pixels (not a decoded JPEG, or cropped / resized "
                              "since): give the level, or the JPEG file itself")
    return Estimate(float(best), f"from the pixels' 8x8 DCT lattice (fit {scored[best]:.2f})")


# --------------------------------------------------------------------------- blur width (sr, deblur)

BLUR_PROBE = 1.0  # sigma (pixels of the image given) of the re-blur that the edges' gradients are compared under
BLUR_EDGE_QUANTILE = 0.9  # the edges read: local maxima of the gradient magnitude in its top 10%
# scale -> (edge width of an unblurred image, edge width per unit of blur width u) in pixels of the image given,
# from `scripts/level_estimation.py --only blur-fit --limit 30` (T91 + BSD200, first 30 of each, u = 0..3 in steps
# of 0.5; docs/BENCHMARKS.md "Level estimation"). x1: plain blur (deblur); x2-x4: blur, MATLAB bicubic, 8 bits.
BLUR_CALIBRATION: dict[int, tuple[float, float]] = {
    1: (0.6615, 0.8726), 2: (0.615, 0.4298), 3: (0.6144, 0.2714), 4: (0.6048, 0.1972)}


def edge_width(image: torch.Tensor) -> float:
    """The median Gaussian width (pixels) of the image's strongest edges, contrast-free: a step edge blurred by
    w has a peak gradient proportional to 1 / w, so re-blurring by the probe p divides it by
    R = sqrt(w^2 + p^2) / w, and w = p / sqrt(R^2 - 1) at every edge maximum (Y of a colour image)."""
    plane = ops.rgb2y(image.detach().double().cpu()) if image.shape[0] == 3 else image[0].detach().double().cpu()
    plane = plane.numpy()
    gradient = np.hypot(*(sobel(plane, axis) for axis in (0, 1)))
    reblurred = np.hypot(*(sobel(gaussian_filter(plane, BLUR_PROBE), axis) for axis in (0, 1)))
    edges = (gradient == maximum_filter(gradient, 3)) & (gradient > np.quantile(gradient, BLUR_EDGE_QUANTILE))
    ratio = gradient[edges] / np.maximum(reblurred[edges], 1e-12)
    ratio = ratio[ratio > 1.0 + 1e-6]
    if ratio.size == 0:
        raise RestorekitError("no edges to measure the blur on (a flat image): give the level")
    return float(np.median(BLUR_PROBE / np.sqrt(ratio**2 - 1.0)))


def blur_width(image: torch.Tensor, scale: int = 1) -> float:
    """The Gaussian blur width u (high-resolution pixels) applied before a x`scale` bicubic downscale (scale 1:
    plain blur), from the edge width w of the image given: w^2 = w0^2 + (k u)^2 with (w0, k) calibrated per scale
    on training images (`BLUR_CALIBRATION`). An image sharper than the calibration's unblurred ones reads 0."""
    if scale not in BLUR_CALIBRATION:
        raise RestorekitError(f"blur width is estimated at scales {sorted(BLUR_CALIBRATION)}, not x{scale}: give the level")
    sharp, slope = BLUR_CALIBRATION[scale]
    return float(np.sqrt(max(edge_width(image) ** 2 - sharp**2, 0.0)) / slope)


def _denoise(image: torch.Tensor, source: Source | None, scale: int | None) -> Estimate:
    return Estimate(round(noise_sigma(image), 2), "noise estimator of Chen et al. 2015, corrected for clipping")


def _jpeg(image: torch.Tensor, source: Source | None, scale: int | None) -> Estimate:
    """Exact from a JPEG file's tables; from the pixels for anything else (a PNG of a decoded JPEG)."""
    if source is not None and is_jpeg(source):
        return jpeg_quality(source)
    return jpeg_quality_from_pixels(image)


def _blur(image: torch.Tensor, source: Source | None, scale: int | None) -> Estimate:
    """The Gaussian blur width: before the downscale of an SR input (`scale`), or of a blurred image (1)."""
    scale = scale or 1
    where = f"before the x{scale} downscale, " if scale > 1 else ""
    return Estimate(round(blur_width(image, scale), 2), f"{where}from the edges' widths under a re-blur, calibrated")


def is_jpeg(source: Source) -> bool:
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return image.format == "JPEG"
    except OSError:
        return False


ESTIMATORS: dict[str, Callable[[torch.Tensor, Source | None, int | None], Estimate]] = {
    "denoise": _denoise,
    "jpeg": _jpeg,
    "sr": _blur,  # the SR task's level is the blur width before the downscale (DL-Net's blurred SR)
    "deblur": _blur,
}


def check_estimable(task: str | None) -> str:
    """The task, when its level can be estimated; else the one-line refusal."""
    if task not in ESTIMATORS:
        raise RestorekitError(f"level 'auto' is estimated for {', '.join(ESTIMATORS)}, not for "
                              f"{task or 'an unnamed task'}: give the level (or the task)")
    return task


def estimate_level(task: str | None, image: torch.Tensor, source: Source | None = None,
                   scale: int | None = None) -> Estimate:
    """The task's level estimated from the image (and its file, for JPEG; the SR scale, for SR's blur width);
    a clear error where none exists."""
    source = Path(source) if isinstance(source, (str, os.PathLike)) else source
    return ESTIMATORS[check_estimable(task)](image, source, scale)


def auto_level(task: str | None, image: torch.Tensor, source: Source | None = None,
               level_range: tuple[float, float] | None = None, scale: int | None = None) -> tuple[float, str]:
    """What `--level auto` restores at: the estimate clamped to the model's levels, and a note saying both."""
    found = estimate_level(task, image, source, scale)
    note = found.describe(task)
    if level_range is None:
        return found.level, note
    low, high = level_range
    level = min(max(found.level, low), high)
    return level, note if level == found.level else f"{note}; outside the model's {low:g}-{high:g}: using {level:g}"
