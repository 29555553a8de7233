"""MATLAB-faithful image operations: bicubic `imresize`, BT.601 colour conversion, `modcrop`.

Every number the field publishes was measured with MATLAB's `imresize(..., 'bicubic')` (a=-0.5 cubic,
antialiased when downscaling) and `rgb2ycbcr` (studio swing). OpenCV and Pillow differ from both, by
tenths of a dB, so these are re-derived here from MATLAB's definitions.

Images are float arrays in [0, 1]. Layouts: numpy (H, W) or (H, W, C); torch (..., C, H, W) or (H, W).
Functions are pure: they never modify their inputs.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

Array = np.ndarray | torch.Tensor

# ---------------------------------------------------------------------------------------------------
# imresize
# ---------------------------------------------------------------------------------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, as MATLAB's `cubic`."""
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    near = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return near + far


@lru_cache(maxsize=256)
def resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """The (out_length, in_length) float64 matrix that MATLAB's bicubic `imresize` applies along one axis.

    Follows MATLAB's `contributions`: output pixel x maps to u = x/scale + 0.5(1 - 1/scale); when
    downscaling with antialiasing the kernel is stretched by 1/scale; borders are mirrored ('symmetric').
    """
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width /= scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, like MATLAB
    distance = u[:, None] - indices
    if scale < 1 and antialiasing:
        weights = scale * _cubic(distance * scale)
    else:
        weights = _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    columns = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_length), taps), columns.ravel()), weights.ravel())
    matrix.setflags(write=False)
    return matrix


def resized_length(in_length: int, scale: float) -> int:
    """The length imresize gives a side of `in_length` at `scale` (MATLAB: ceil(scale * size))."""
    # the rounding guards against 510 * (1/3) = 170.00000000000003.
    return int(math.ceil(round(in_length * scale, 9)))


def _plan(height: int, width: int, scale: float | tuple[float, float] | None, size: tuple[int, int] | None):
    if (scale is None) == (size is None):
        raise ValueError("imresize needs exactly one of scale or size")
    if size is not None:
        out_h, out_w = int(size[0]), int(size[1])
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"imresize: output size must be positive, got {size}")
        return (out_h / height, out_w / width), (out_h, out_w)
    scale_h, scale_w = (scale, scale) if np.isscalar(scale) else scale  # type: ignore[misc]
    if scale_h <= 0 or scale_w <= 0:
        raise ValueError(f"imresize: scale must be positive, got {scale}")
    return (float(scale_h), float(scale_w)), (resized_length(height, scale_h), resized_length(width, scale_w))


def imresize(
    image: Array,
    scale: float | tuple[float, float] | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialiasing: bool = True,
) -> Array:
    """MATLAB `imresize(image, scale, 'bicubic')` (or to `size=(H, W)`), without rounding.

    numpy input: (H, W) or (H, W, C), computed in float64. torch input: (..., H, W) batched on its own
    device, computed in the input's float dtype (float64 stays float64). Round the result yourself
    when emulating MATLAB on uint8 images (MATLAB rounds uint8 outputs).
    """
    if isinstance(image, torch.Tensor):
        return _imresize_torch(image, scale, size, antialiasing)
    array = np.asarray(image, dtype=np.float64)
    height, width = array.shape[:2]
    (scale_h, scale_w), (out_h, out_w) = _plan(height, width, scale, size)
    rows = resize_matrix(height, out_h, scale_h, antialiasing)
    cols = resize_matrix(width, out_w, scale_w, antialiasing)
    if array.ndim == 2:
        return rows @ array @ cols.T
    return np.einsum("oh,hwc,pw->opc", rows, array, cols, optimize=True)


def _imresize_torch(image: torch.Tensor, scale, size, antialiasing: bool) -> torch.Tensor:
    if not image.is_floating_point():
        raise TypeError("imresize: torch input must be a float tensor in [0, 1]")
    height, width = image.shape[-2:]
    (scale_h, scale_w), (out_h, out_w) = _plan(height, width, scale, size)
    rows = torch.tensor(resize_matrix(height, out_h, scale_h, antialiasing), dtype=image.dtype, device=image.device)
    cols = torch.tensor(resize_matrix(width, out_w, scale_w, antialiasing), dtype=image.dtype, device=image.device)
    return rows @ image @ cols.T


def downscale(image: Array, factor: int | float) -> Array:
    """MATLAB bicubic downscale by `factor` (the SR benchmark's LR generator). Expects a modcropped input."""
    height, width = (image.shape[-2:] if isinstance(image, torch.Tensor) else image.shape[:2])
    if isinstance(factor, int) or float(factor).is_integer():
        factor = int(factor)
        if height % factor or width % factor:
            raise ValueError(f"downscale: {height}x{width} is not divisible by {factor}; modcrop first")
        return imresize(image, size=(height // factor, width // factor))
    return imresize(image, 1 / factor)


def upscale(image: Array, factor: int | float) -> Array:
    """MATLAB bicubic upscale by `factor` (the 'bicubic' SR baseline and the VDSR/AdaFM input)."""
    height, width = (image.shape[-2:] if isinstance(image, torch.Tensor) else image.shape[:2])
    return imresize(image, size=(resized_length(height, factor), resized_length(width, factor)))


# ---------------------------------------------------------------------------------------------------
# Colour
# ---------------------------------------------------------------------------------------------------

# MATLAB rgb2ycbcr (BT.601 studio swing): [Y Cb Cr] = offset + M @ [R G B], RGB in [0, 1], YCbCr in [0, 255].
_YCBCR_MATRIX = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
# OpenCV COLOR_RGB2YCrCb luma: full range, no offset (1.32 dB lower Y-PSNR than MATLAB's, see field notes).
_OPENCV_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
# How an RGB image becomes one grey channel (training data, evaluation): the `rgb2y` formula behind each
# name. 'luma' is what PIL's convert('L') and cv2 give users; 'y' is the JPEG/SR benchmarks' Y channel.
GREY_FORMULAS = {"luma": "opencv", "y": "matlab"}


def _channel_axis(image: Array) -> int:
    return -3 if isinstance(image, torch.Tensor) else -1


def _apply_colour_matrix(image: Array, matrix: np.ndarray, offset: np.ndarray) -> Array:
    """out[c] = sum_k matrix[c, k] * image[k] + offset[c] along the channel axis, for numpy or torch."""
    if isinstance(image, torch.Tensor):
        m = torch.as_tensor(matrix, dtype=image.dtype, device=image.device)
        o = torch.as_tensor(offset, dtype=image.dtype, device=image.device)
        return torch.einsum("ck,...khw->...chw", m, image) + o[:, None, None]
    array = np.asarray(image, dtype=np.float64)
    return array @ matrix.T + offset


def _check_rgb(image: Array) -> None:
    if image.shape[_channel_axis(image)] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(image.shape)}")


def rgb2ycbcr(image: Array, *, only_y: bool = False, rounding: bool = False) -> Array:
    """MATLAB `rgb2ycbcr` on [0, 1] RGB, returning [0, 1] YCbCr (Y in [16/255, 235/255]).

    `rounding=True` reproduces MATLAB on uint8 input, which returns uint8 (values rounded to 1/255).
    """
    _check_rgb(image)
    matrix, offset = (_YCBCR_MATRIX[:1], _YCBCR_OFFSET[:1]) if only_y else (_YCBCR_MATRIX, _YCBCR_OFFSET)
    out = _apply_colour_matrix(image, matrix, offset)
    if rounding:
        out = out.round() if isinstance(out, torch.Tensor) else np.round(out)
    out = out / 255.0
    if only_y:
        out = out[..., 0, :, :] if isinstance(out, torch.Tensor) else out[..., 0]
    return out


def ycbcr2rgb(image: Array) -> Array:
    """Inverse of `rgb2ycbcr` (MATLAB `ycbcr2rgb`), [0, 1] in and out, unclipped."""
    _check_rgb(image)
    inverse = np.linalg.inv(_YCBCR_MATRIX)
    return _apply_colour_matrix(image, inverse * 255.0, -(inverse @ _YCBCR_OFFSET))


def rgb2y(image: Array, formula: str = "matlab", rounding: bool = False) -> Array:
    """Luma of an RGB image in [0, 1]: 'matlab' (studio swing, as SR papers) or 'opencv' (full range)."""
    if formula == "matlab":
        return rgb2ycbcr(image, only_y=True, rounding=rounding)
    if formula != "opencv":
        raise ValueError(f"unknown y_formula {formula!r}; choose 'matlab' or 'opencv'")
    _check_rgb(image)
    out = _apply_colour_matrix(image, _OPENCV_LUMA[None, :] * 255.0, np.zeros(1))
    if rounding:
        out = out.round() if isinstance(out, torch.Tensor) else np.round(out)
    out = out / 255.0
    return out[..., 0, :, :] if isinstance(out, torch.Tensor) else out[..., 0]


# ---------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------


def scale_modulus(scale: float) -> int:
    """The side a benchmark HR image is cropped to a multiple of so that its LR side at `scale` is whole: the
    scale itself for an integer, the numerator of its fraction otherwise (x3.5 = 7/2: multiples of 7)."""
    fraction = Fraction(float(scale)).limit_denominator(100)
    if fraction <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return fraction.numerator


def as_scale(scale: float) -> int | float:
    """An SR factor as the toolkit writes it: an int when whole (x3), a float otherwise (x3.5)."""
    return int(scale) if float(scale).is_integer() else float(scale)


def modcrop(image: Array, modulo: int) -> Array:
    """Crop the bottom/right so height and width are multiples of `modulo` (MATLAB `modcrop`)."""
    if modulo < 1:
        raise ValueError(f"modcrop: modulo must be >= 1, got {modulo}")
    if isinstance(image, torch.Tensor):
        height, width = image.shape[-2:]
        return image[..., : height - height % modulo, : width - width % modulo]
    height, width = image.shape[:2]
    return image[: height - height % modulo, : width - width % modulo, ...]


def shave(image: Array, border: int) -> Array:
    """Remove `border` pixels from every side (the SR metric's border crop)."""
    if border <= 0:
        return image
    if isinstance(image, torch.Tensor):
        return image[..., border:-border, border:-border]
    return image[border:-border, border:-border, ...]


def crop_top_left(image: Array, height: int, width: int) -> Array:
    """Top-left crop, e.g. BSD100's 480x320 SR-benchmark convention."""
    if isinstance(image, torch.Tensor):
        return image[..., :height, :width]
    return image[:height, :width, ...]


def quantize(image: Array, mode: str | None = "round", bit_depth: int = 8) -> Array:
    """Clamp to [0, 1] and quantize to 2^bit_depth - 1 levels by 'round' or 'trunc' (None: clamp only).

    Returned in [0, 1] scale. 'trunc' mimics `astype(uint8)` / `.byte()` casts (CARN, DuRN), about
    0.1-0.2 dB lower than rounding.
    """
    peak = float(2**bit_depth - 1)
    if isinstance(image, torch.Tensor):
        out = image.clamp(0, 1)
        if mode == "round":
            out = (out * peak).round() / peak
        elif mode == "trunc":
            out = (out * peak).floor() / peak
    else:
        out = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
        if mode == "round":
            out = np.round(out * peak) / peak
        elif mode == "trunc":
            out = np.floor(out * peak) / peak
    if mode not in ("round", "trunc", None):
        raise ValueError(f"unknown quantize mode {mode!r}; choose 'round', 'trunc' or None")
    return out
