"""Blur operators (`blur:kind=...`): isotropic Gaussian, disk, linear motion (MBN/ImageNet-C), random trajectory.

All use replicate borders (as CResMD/AdaFM's MATLAB `imfilter(..., 'replicate')` and ImageNet-C's
`shift`), preserve the image size and are linear, so each has a differentiable `forward`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import torch

from restorekit.degrade import linear
from restorekit.degrade.operator import Extras, Level, Operator, host_exp, register, set_default_kind
from restorekit.degrade.params import Param, parse_value
from restorekit.degrade.seeding import Context
from restorekit.errors import SpecError


class _Blur(Operator):
    name = "blur"
    differentiable = True


# ----------------------------------------------------------------------------------------- Gaussian


def gaussian_band_matrices(widths: Sequence[float], length: int, like: torch.Tensor) -> torch.Tensor:
    """(B, L, L) replicate-border Gaussian band matrices, built in one vectorised pass (no caching needed
    for the continuous widths of training ranges)."""
    radius = max(int(math.ceil(4 * w)) for w in widths) if max(widths) > 0 else 0
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.tensor(widths, dtype=torch.float64).view(-1, 1)
    safe = torch.where(w > 0, w, torch.ones_like(w))
    kernels = host_exp(-(t**2) / (2 * safe**2))
    kernels = torch.where(w > 0, kernels, (t == 0).to(torch.float64).expand_as(kernels))
    # Each width keeps its own ceil(4 w) radius so the result matches gaussian_kernel1d exactly.
    own_radius = torch.tensor([math.ceil(4 * x) if x > 0 else 0 for x in widths], dtype=torch.float64).view(-1, 1)
    kernels = kernels * (t.abs() <= own_radius)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    taps = 2 * radius + 1
    index = (torch.arange(length).view(-1, 1) + torch.arange(taps).view(1, -1) - radius).clamp(0, length - 1)
    matrices = torch.zeros(len(widths), length, length, dtype=torch.float64)
    matrices.scatter_add_(2, index.expand(len(widths), length, taps), kernels.view(-1, 1, taps).expand(-1, length, taps))
    return matrices.to(like.device, like.dtype)


@register
class GaussianBlur(_Blur):
    """Isotropic Gaussian of standard deviation `width` px (SRMD/DL-Net's kernel width u)."""

    kind = "gaussian"
    primary = "width"
    summary = "isotropic Gaussian blur"
    source = "DL-Net u∈[0, 3], test {0, 1.3, 2.6}; SHDD [1.0, 2.5]; Flickr-Distortion σ {1.5, 3, 6}"
    params = (Param("width", "float", "standard deviation in pixels (0 = no blur)", default="0..3", low=0, high=50),)

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        return self._blur(x, [lv["width"] for lv in levels]), [{} for _ in levels]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._blur(x, [level["width"]] * x.shape[0])

    @staticmethod
    def _blur(x: torch.Tensor, widths: list[float]) -> torch.Tensor:
        h, w = x.shape[-2:]
        if all(width == widths[0] for width in widths):
            kernel = tuple(linear.gaussian_kernel1d(widths[0]))
            rows = linear.band_tensor(kernel, h, x)
            cols = rows if h == w else linear.band_tensor(kernel, w, x)
        else:
            rows = gaussian_band_matrices(widths, h, x)
            cols = rows if h == w else gaussian_band_matrices(widths, w, x)
        return linear.separable(x, rows, cols)


# --------------------------------------------------------------------------------------------- disk


@lru_cache(maxsize=64)
def disk_kernel(radius: float, supersample: int = 32) -> np.ndarray:
    """Anti-aliased disk (MATLAB `fspecial('disk', r)`): each tap is the pixel's area inside the circle,
    measured on a `supersample`² grid; normalised to sum 1."""
    if radius <= 0:
        return np.ones((1, 1))
    r = max(0, int(math.ceil(radius - 0.5)))  # MATLAB's crad: the farthest pixel the circle touches
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    centres = np.arange(-r, r + 1, dtype=np.float64)
    ys = (centres[:, None] + offsets[None, :]).ravel()
    inside = (ys[:, None] ** 2 + ys[None, :] ** 2) <= radius**2
    size = 2 * r + 1
    area = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    total = area.sum()
    return area / total if total > 0 else np.ones((1, 1))  # a disk smaller than any sample point


@register
class DiskBlur(_Blur):
    """Out-of-focus (pillbox) blur of radius `radius` px."""

    kind = "disk"
    primary = "radius"
    summary = "disk (defocus) blur"
    source = "RED-Net deblurring, 'disk' kernels of Xu et al. (parameters not stated)"
    params = (Param("radius", "float", "disk radius in pixels (0 = no blur)", low=0, high=50),)

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        kernels = _stack_kernels([disk_kernel(lv["radius"]) for lv in levels])
        return _conv(x, kernels), [{} for _ in levels]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return _conv(x, torch.from_numpy(disk_kernel(level["radius"])))


def _stack_kernels(kernels: list[np.ndarray]) -> torch.Tensor:
    """Zero-pad odd square kernels to a common size and stack them (B, k, k)."""
    size = max(k.shape[0] for k in kernels)
    out = np.zeros((len(kernels), size, size))
    for i, k in enumerate(kernels):
        off = (size - k.shape[0]) // 2
        out[i, off : off + k.shape[0], off : off + k.shape[1]] = k
    return torch.from_numpy(out)


SPARSE_TAPS = 128  # kernels with at most this many nonzero taps run as shifted sums (measured break-even)
SPARSE_KERNEL_SIZE = 13  # ...if they are at least this wide; smaller ones are cheapest as direct convolution


def kernel_taps(kernel: torch.Tensor | np.ndarray) -> list[tuple[int, int, float]]:
    """Nonzero taps of an odd square correlation kernel as (dy, dx, weight) for `linear.shift_sum`."""
    array = kernel.detach().cpu().numpy() if isinstance(kernel, torch.Tensor) else np.asarray(kernel)
    r = array.shape[-1] // 2
    rows, cols = np.nonzero(array)
    return list(zip((r - rows).tolist(), (r - cols).tolist(), array[rows, cols].tolist()))


def _conv(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Per-sample (B, k, k) or shared (k, k) correlation with replicate borders.

    Small kernels run as one direct (grouped) convolution; larger sparse ones (trajectories) cost one
    shifted add per nonzero tap, per sample; large dense ones go through the FFT.
    """
    if kernels.dim() == 3 and all(torch.equal(kernels[0], k) for k in kernels[1:]):
        kernels = kernels[0]
    if kernels.shape[-1] < SPARSE_KERNEL_SIZE:
        return linear.conv2d_replicate(x, kernels.to(x.device, x.dtype))
    if kernels.dim() == 3:
        return torch.cat([_conv(x[i : i + 1], k) for i, k in enumerate(kernels)])
    taps = kernel_taps(kernels)
    if len(taps) <= SPARSE_TAPS:
        return linear.shift_sum(x, taps)
    return linear.conv2d_replicate(x, kernels.to(x.device, x.dtype))


# ------------------------------------------------------------------------------------------- motion

# MBN App. C: (radius, sigma) pairs of the Hendrycks et al. motion blur.
MBN_MOTION_PRESETS = ((10, 1.5), (10, 2.5), (12, 3.0), (12, 3.5), (13, 8.0), (15, 12.0))


def motion_taps(radius: int, sigma: float, angle: float, height: int, width: int) -> list[tuple[int, int, float]]:
    """The ImageNet-C `_motion_blur` kernel as sparse taps (dy, dx, weight).

    width = 2 radius + 1 taps along a line at `angle` degrees, one-sided Gaussian weights
    exp(-i²/2σ²) normalised to 1, offsets -ceil(i·sin θ - 0.5), -ceil(i·cos θ - 0.5); like the
    reference, stops when a shift would leave the image. Taps with the same offset are merged.
    """
    n = 2 * int(radius) + 1
    i = np.arange(n, dtype=np.float64)
    weights = np.exp(-(i**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    weights /= weights.sum()
    theta = math.radians(angle)
    dy = -np.ceil(i * math.sin(theta) - 0.5).astype(int)
    dx = -np.ceil(i * math.cos(theta) - 0.5).astype(int)
    outside = np.flatnonzero((np.abs(dy) >= height) | (np.abs(dx) >= width))
    stop = int(outside[0]) if outside.size else n
    # Steps that land on the same pixel offset are merged (one shifted add instead of several).
    merged: dict[tuple[int, int], float] = {}
    for y, x, weight in zip(dy[:stop].tolist(), dx[:stop].tolist(), weights[:stop].tolist()):
        merged[(y, x)] = merged.get((y, x), 0.0) + weight
    return [(y, x, weight) for (y, x), weight in merged.items()]


@register
class MotionBlur(_Blur):
    """Linear motion blur of Hendrycks et al. (ImageNet-C), MBN's mixed-dataset recipe by default."""

    kind = "motion"
    primary = "radius"
    summary = "linear motion blur (ImageNet-C)"
    source = "MBN App. C: (radius, sigma) from 6 pairs, angle ~ U[-45°, 45°]"
    params = (
        Param("preset", "int", "index 1..6 into MBN's (radius, sigma) pairs", default=None, low=1, high=6),
        Param("radius", "int", "kernel radius: 2r+1 taps", default=None, low=0, high=100),
        Param("sigma", "float", "decay of the one-sided Gaussian tap weights", default=None, low=0, low_open=True, high=100),
        Param("angle", "float", "direction in degrees (0 = horizontal)", default="-45..45", low=-360, high=360),
    )

    def validate(self) -> None:
        super().validate()
        has_pair = "radius" in self.values or "sigma" in self.values
        if has_pair and "preset" in self.values:
            raise SpecError("blur:kind=motion: give preset= or radius= and sigma=, not both")
        if has_pair and not ("radius" in self.values and "sigma" in self.values):
            raise SpecError("blur:kind=motion: radius= and sigma= go together")
        if not has_pair and "preset" not in self.values:
            self.values = {"preset": parse_value(self.params[0], "1..6", self.label()), **self.values}

    def sample_level(self, rng: np.random.Generator) -> Level:
        """Presets resolve to their (radius, sigma), so the record holds the actual kernel parameters."""
        level = super().sample_level(rng)
        if "preset" in level:
            radius, sigma = MBN_MOTION_PRESETS[level.pop("preset") - 1]
            level = {"kind": self.kind, "radius": radius, "sigma": sigma, "angle": level["angle"]}
        return level

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        return self._blur_each(x, levels), [{} for _ in levels]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._blur_each(x, [level] * x.shape[0])

    @staticmethod
    def _blur_each(x: torch.Tensor, levels: Sequence[Level]) -> torch.Tensor:
        h, w = x.shape[-2:]
        keys = [(lv["radius"], lv["sigma"], lv["angle"]) for lv in levels]
        if all(k == keys[0] for k in keys):
            return linear.shift_sum(x, motion_taps(*keys[0], h, w))
        return linear.correlate_taps(x, [motion_taps(*k, h, w) for k in keys])


# --------------------------------------------------------------------------------------- trajectory


def trajectory_kernel(rng: np.random.Generator, length: float, turn: float, points: int = 64) -> np.ndarray:
    """A random camera-shake kernel: a smooth random walk of total length `length` px, rasterised.

    Direction changes by N(0, turn²) radians per step (a simplified Boracchi & Foi trajectory);
    points are splatted bilinearly, the kernel is centred on the trajectory's centroid and normalised.
    """
    if length <= 0:
        return np.ones((1, 1))
    angles = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, turn, points))
    steps = np.exp(1j * angles) * (length / points)
    path = np.concatenate([[0], np.cumsum(steps)])
    path -= path.mean()
    radius = int(math.ceil(np.abs(path).max())) + 1
    size = 2 * radius + 1
    xs, ys = path.real + radius, path.imag + radius
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    corner = y0 * size + x0  # flat index of each point's top-left pixel; its four pixels follow
    index = np.concatenate([corner, corner + 1, corner + size, corner + size + 1])
    weight = np.concatenate([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
    kernel = np.bincount(index, weight, minlength=size * size).reshape(size, size)
    return kernel / kernel.sum()


@register
class TrajectoryBlur(_Blur):
    """Motion blur along a random (non-linear) camera trajectory; the kernel is kept in the record's state."""

    kind = "trajectory"
    primary = "length"
    summary = "random-trajectory camera-shake blur"
    source = "Boracchi & Foi style random trajectories (RED-Net's 'motion' kernels; generator ours)"
    needs_state = True
    params = (
        Param("length", "float", "trajectory length in pixels", default="5..25", low=0, high=100),
        Param("turn", "float", "std of the direction change per step, radians", default="0.25", low=0, high=3.2),
    )

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        kernels = [trajectory_kernel(ctx.host, lv["length"], lv["turn"]) for lv in levels]
        taps = [kernel_taps(k) for k in kernels]
        if max(len(t) for t in taps) <= SPARSE_TAPS:
            out = linear.correlate_taps(x, taps)
        else:
            out = _conv(x, _stack_kernels(kernels))
        return out, [{"kernel": torch.from_numpy(k)} for k in kernels]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return _conv(x, state["kernel"])


set_default_kind("blur", "gaussian")

__all__ = ["DiskBlur", "GaussianBlur", "MotionBlur", "TrajectoryBlur"]
