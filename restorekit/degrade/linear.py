"""Linear filtering as matrix products: the fast path for blur, resizing and their differentiable forwards.

A separable filter with replicate borders is `R_h @ x @ R_w^T`, where each R is a banded matrix whose
rows hold the 1-D kernel at clamped (replicated) indices. MATLAB's `imresize` is the same form
(`restorekit.ops.resize_matrix`). On a CPU a 96-wide dense matrix product through BLAS beats a
13-tap depthwise convolution by several times, and it is exactly differentiable.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import cache, lru_cache, partial

import numpy as np
import torch
import torch.nn.functional as F

from restorekit import ops


def gaussian_kernel1d(width: float, radius: int | None = None) -> np.ndarray:
    """Normalised sampled Gaussian of standard deviation `width` px, radius ceil(4 width) by default.

    Width 0 is the identity (DL-Net's u = 0: bicubic degradation only). Four sigmas keep the
    truncation error of the kernel's measured width under 0.1%.
    """
    if width <= 0:
        return np.ones(1)
    r = int(math.ceil(4 * width)) if radius is None else int(radius)
    t = np.arange(-r, r + 1, dtype=np.float64)
    kernel = np.exp(-(t**2) / (2 * width * width))
    return kernel / kernel.sum()


@lru_cache(maxsize=512)
def band_matrix(kernel: tuple[float, ...], length: int) -> np.ndarray:
    """(length, length) matrix applying centred 1-D `kernel` (correlation) with replicate borders."""
    k = np.asarray(kernel, dtype=np.float64)
    r = len(k) // 2
    rows = np.repeat(np.arange(length), len(k))
    cols = np.clip(np.arange(length)[:, None] + np.arange(len(k))[None, :] - r, 0, length - 1).ravel()
    matrix = np.zeros((length, length))
    np.add.at(matrix, (rows, cols), np.tile(k, length))
    matrix.setflags(write=False)
    return matrix


def quantize_(y: torch.Tensor) -> torch.Tensor:
    """In-place clamp to [0, 1] and rounding to uint8 levels (as ops.quantize 'round'), for tensors we own.

    One buffer instead of four temporaries: at training batch sizes allocation dominates the arithmetic.
    """
    return y.clamp_(0, 1).mul_(255).round_().div_(255)


def to_torch(matrix: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """Copy a (possibly read-only, cached) numpy matrix to `like`'s device and dtype."""
    return torch.from_numpy(np.array(matrix)).to(like.device, like.dtype)


@lru_cache(maxsize=256)
def _band_tensor(kernel: tuple[float, ...], length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.array(band_matrix(kernel, length))).to(device, dtype)


def band_tensor(kernel: tuple[float, ...], length: int, like: torch.Tensor) -> torch.Tensor:
    """`band_matrix` as a tensor on `like`'s device/dtype, cached (fixed levels reuse it every batch)."""
    return _band_tensor(kernel, length, like.dtype, like.device)


@lru_cache(maxsize=256)
def _resize_tensor(in_length: int, out_length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    matrix = ops.resize_matrix(in_length, out_length, out_length / in_length, True)
    return torch.from_numpy(np.array(matrix)).to(device, dtype)


def separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """`rows @ x @ cols^T` over the last two axes of (B, C, H, W) `x`.

    `rows` (H', H) and `cols` (W', W) are shared by the batch, or (B, H', H) / (B, W', W) per sample.
    The shared case runs the horizontal pass as one large GEMM, which BLAS does best.
    """
    b, c, h, w = x.shape
    if cols.dim() == 2:
        horizontal = (x.reshape(-1, w) @ cols.T).view(b, c, h, cols.shape[0])
    else:
        horizontal = x @ cols.transpose(-1, -2)[:, None]
    if rows.dim() == 2:
        return torch.matmul(rows, horizontal)
    return rows[:, None] @ horizontal


def resize_matrices(height: int, width: int, out_size: tuple[int, int], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB bicubic (antialiased) resize matrices to `out_size`, as restorekit.ops.imresize uses."""
    out_h, out_w = out_size
    return _resize_tensor(height, out_h, like.dtype, like.device), _resize_tensor(width, out_w, like.dtype, like.device)


def fast_fft_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: pocketfft is several times slower on lengths with large prime factors."""
    best = 1 << (n - 1).bit_length()
    for p3 in (1, 3, 9, 27, 81):
        for p5 in (1, 5, 25, 125):
            base = p3 * p5
            if base > 2 * n:
                continue
            length = base
            while length < n:
                length *= 2
            best = min(best, length)
    return best


FFT_KERNEL_SIZE = 21  # from this kernel size on, FFT correlation beats direct depthwise convolution (measured)


def conv2d_replicate(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate each sample of (B, C, H, W) `x` with its own odd-sized (k, k) kernel, replicate borders.

    `kernels` is (B, k, k), or (k, k) shared; all channels of a sample use the same kernel. Large
    kernels go through the FFT (the circular wrap only touches the padding, which is cropped).
    """
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    pad = k // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    if k >= FFT_KERNEL_SIZE:
        # Any size >= the padded one works (no wrap reaches the kept pixels); pick one FFTs like.
        size = (fast_fft_length(h + 2 * pad), fast_fft_length(w + 2 * pad))
        spectrum = torch.fft.rfft2(padded, s=size) * torch.fft.rfft2(kernels.to(x.dtype), s=size).conj().unsqueeze(-3)
        return torch.fft.irfft2(spectrum, s=size)[..., :h, :w]
    # Every image plane is its own group, even for a shared kernel: oneDNN runs this depthwise layout
    # 3-5x faster than a batch of C-group convolutions (measured).
    if kernels.dim() == 2:
        weight = kernels.to(x.dtype)[None, None].expand(b * c, 1, k, k).contiguous()
    else:
        weight = kernels.to(x.dtype)[:, None].repeat_interleave(c, dim=0)  # (B*C, 1, k, k)
    out = F.conv2d(padded.reshape(1, b * c, h + 2 * pad, w + 2 * pad), weight, groups=b * c)
    return out.view(b, c, h, w)


def shift_sum(x: torch.Tensor, taps: list[tuple[int, int, float]], border: str = "replicate") -> torch.Tensor:
    """Σ weight · x shifted by (dy, dx): a sparse kernel (motion-blur lines, rain streaks).

    out[y, x] = Σ w · in[clamp(y - dy), clamp(x - dx)] with replicate borders (ImageNet-C's `shift`),
    or zeros outside the image with `border='zeros'`.
    """
    h, w = x.shape[-2:]
    pad_y = max(abs(dy) for dy, _, _ in taps)
    pad_x = max(abs(dx) for _, dx, _ in taps)
    if pad_x or pad_y:
        padded = F.pad(x, (pad_x, pad_x, pad_y, pad_y), mode="replicate" if border == "replicate" else "constant")
    else:
        padded = x
    out = None
    for dy, dx, weight in taps:
        view = padded[..., pad_y - dy : pad_y - dy + h, pad_x - dx : pad_x - dx + w]
        if out is None:
            out = view * weight
        else:
            out.add_(view, alpha=weight)
    assert out is not None
    return out


def correlate_taps(x: torch.Tensor, taps: list[list[tuple[int, int, float]]], border: str = "replicate") -> torch.Tensor:
    """`shift_sum` with each sample's own sparse kernel (motion lines, streaks, trajectories).

    On a CPU, for data (no autograd), each shifted window is one BLAS `axpy` on a flat padded copy
    of the sample (`_correlate_taps_axpy`); elsewhere, and whenever a gradient is needed, each is a
    torch add (`_correlate_taps_torch`). The two agree to float rounding (tested).
    """
    if x.device.type == "cpu" and x.dtype in AXPY_DTYPES and not (x.requires_grad and torch.is_grad_enabled()):
        return _correlate_taps_axpy(x, taps, border)
    return _correlate_taps_torch(x, taps, border)


def _tap_arrays(taps: list[list[tuple[int, int, float]]]) -> tuple[list[np.ndarray], int, int]:
    """Each sample's taps as rows (dy, dx, weight), and the padding (rows, columns) they need."""
    arrays = [np.asarray(sample, dtype=np.float64).reshape(-1, 3) for sample in taps]
    pad_y = int(max(np.abs(t[:, 0]).max(initial=0) for t in arrays))
    pad_x = int(max(np.abs(t[:, 1]).max(initial=0) for t in arrays))
    return arrays, pad_y, pad_x


AXPY_DTYPES = {torch.float32: "s", torch.float64: "d"}


@cache
def _blas_axpy(dtype: torch.dtype) -> tuple[Callable[..., np.ndarray], Callable[[], AbstractContextManager]]:
    """SciPy's BLAS `?axpy` for `dtype`, and a context that keeps OpenBLAS to one thread while it runs.

    OpenBLAS splits any axpy of over 10,000 elements (ours: 30-50k) across every core, and its
    threads spin between calls; beside torch's threads, or in several DataLoader workers, they
    oversubscribe the cores. bench/blas_threads.py, trajectory blur on the 2-core machine, two runs:
    in two worker processes with one torch thread each, 3,532-3,696 patches/s per process with the
    limit against 496-1,092 without; in one process with two torch threads, 3,875 / 3,879 and
    3,995 / 4,333 (limit / none). The previous limit is restored on exit, so nothing else in the
    process is affected.
    """
    from scipy.linalg import blas  # imported lazily to keep `import restorekit` light
    from threadpoolctl import ThreadpoolController

    openblas = ThreadpoolController().select(internal_api="openblas")  # made after SciPy's BLAS is loaded, so it is found
    return getattr(blas, AXPY_DTYPES[dtype] + "axpy"), partial(openblas.limit, limits=1)


def _correlate_taps_axpy(x: torch.Tensor, taps: list[list[tuple[int, int, float]]], border: str) -> torch.Tensor:
    """The CPU data path: one BLAS `axpy` call per tap, with no tensor made per window.

    Each sample is padded into a scratch grid (C, top + H + bottom, left + W + right), the margins
    just wide enough for its own kernel (motion kernels are one-sided). Flattened, a shift (dy, dx)
    is then one contiguous run at a fixed offset, for all channels at once, so one `axpy` adds it to
    the sample's output laid out on the same grid (the margins are scratch, cropped when copied out).
    A call costs about 1 us of overhead against 8-12 us for a torch view plus add, and the kernels
    hold 20-60 taps, so that overhead was most of the time. The scratch grids are reused, so they
    stay in cache and no batch-sized buffer is allocated (fresh 10 MB buffers cost milliseconds of
    page faults per batch here).
    """
    b, c, h, w = x.shape
    axpy, single_thread = _blas_axpy(x.dtype)
    images = x.detach().numpy()
    result = torch.empty((b, c, h, w), dtype=x.dtype)
    results = result.numpy()
    arrays, _, _ = _tap_arrays(taps)
    with single_thread():
        for i, sample in enumerate(arrays):
            if not len(sample):
                results[i] = 0
                continue
            dy, dx, weights = sample[:, 0].astype(np.int64), sample[:, 1].astype(np.int64), sample[:, 2].tolist()
            top, bottom = max(int(dy.max()), 0), max(int(-dy.min()), 0)
            left, right = max(int(dx.max()), 0), max(int(-dx.min()), 0)
            tall, wide = top + h + bottom, left + w + right
            source, target = _scratch_grids(c * tall * wide, images.dtype)
            _pad_into(source[: c * tall * wide].reshape(c, tall, wide), images[i], top, left, border)
            offsets = ((top - dy) * wide + left - dx).tolist()
            # Output pixel (ch, r, q) sits at ch*tall*wide + r*wide + q; the last one needed is (C-1, H-1, W-1).
            length = (c - 1) * tall * wide + (h - 1) * wide + w
            np.multiply(source[offsets[0] : offsets[0] + length], weights[0], out=target[:length])
            for offset, weight in zip(offsets[1:], weights[1:]):
                axpy(source, target, length, weight, offset)
            results[i] = target[: c * tall * wide].reshape(c, tall, wide)[:, :h, :w]
    return result


_SCRATCH = threading.local()
SCRATCH_LIMIT = 1 << 26  # bytes; larger grids (whole photos) are not kept between calls


def _scratch_grids(size: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Two flat buffers of at least `size` elements for `_correlate_taps_axpy`, kept per thread."""
    grids = _SCRATCH.__dict__.get("grids")
    if grids is None or grids[0].size < size or grids[0].dtype != dtype:
        grids = (np.empty(size, dtype), np.empty(size, dtype))
        if grids[0].nbytes <= SCRATCH_LIMIT:
            _SCRATCH.grids = grids
    return grids


def _pad_into(grid: np.ndarray, image: np.ndarray, top: int, left: int, border: str) -> None:
    """Write (C, H, W) `image` into `grid` at (top, left); fill the margins by replicating its edges,
    or with zeros."""
    h, w = image.shape[-2:]
    grid[:, top : top + h, left : left + w] = image
    if border == "replicate":
        grid[:, top : top + h, :left] = image[:, :, :1]
        grid[:, top : top + h, left + w :] = image[:, :, -1:]
        grid[:, :top] = grid[:, top : top + 1]
        grid[:, top + h :] = grid[:, top + h - 1 : top + h]
    else:
        grid[:, top : top + h, :left] = 0
        grid[:, top : top + h, left + w :] = 0
        grid[:, :top] = 0
        grid[:, top + h :] = 0


def _correlate_taps_torch(x: torch.Tensor, taps: list[list[tuple[int, int, float]]], border: str) -> torch.Tensor:
    """Device-agnostic and differentiable: one torch add per tap and sample.

    The batch is padded once; then each sample accumulates its taps into its slice of the output.
    Per-sample operations stay below torch's parallel grain for training patches, so they never wait
    on a thread barrier. Each shifted window is made by one `as_strided` call: indexing
    `padded[i, :, a:b, c:d]` costs more than the add itself at this size.
    """
    b, c, h, w = x.shape
    arrays, pad_y, pad_x = _tap_arrays(taps)
    mode = "replicate" if border == "replicate" else "constant"
    padded = F.pad(x, (pad_x, pad_x, pad_y, pad_y), mode=mode) if (pad_x or pad_y) else x
    stride_b, stride_c, stride_y, stride_x = padded.stride()
    size, strides = (c, h, w), (stride_c, stride_y, stride_x)
    out = torch.zeros_like(x)
    for i, sample in enumerate(arrays):
        target = out[i]
        corner = padded.storage_offset() + i * stride_b + pad_y * stride_y + pad_x * stride_x
        offsets = corner - sample[:, 0].astype(np.int64) * stride_y - sample[:, 1].astype(np.int64) * stride_x
        for offset, weight in zip(offsets.tolist(), sample[:, 2].tolist()):
            target.add_(padded.as_strided(size, strides, offset), alpha=weight)
    return out
