"""PSNR, SSIM and PSNR-B with every protocol switch explicit.

Papers in this field differ in colour space (RGB, MATLAB-Y, OpenCV-Y), border crop, and whether the
output is rounded or truncated to uint8; each is worth 0.1-1.3 dB. So every switch is an argument, and
`Protocol` records them beside each reported number.

Inputs are float images in [0, 1]: numpy (H, W) / (H, W, C) or torch (C, H, W) / (B, C, H, W).
The batched torch functions (`psnr_batch`, `ssim_batch`) return one value per image and run on any
device, for validation during training. All computation is float64.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from restorekit import ops
from restorekit.errors import MissingPackage

Array = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class Protocol:
    """How a number was measured. Defaults are the SR-benchmark convention (MATLAB SelfExSR scripts)."""

    y_channel: bool = True
    crop_border: int = 0
    quantize: str | None = "round"  # 'round' | 'trunc' | None: how the output becomes uint8
    y_formula: str = "matlab"  # 'matlab' (studio swing) | 'opencv' (full range)
    round_y: bool = True  # MATLAB's rgb2ycbcr on uint8 returns uint8 Y

    def as_dict(self) -> dict:
        return asdict(self)


def _to_batch(image: Array) -> torch.Tensor:
    """Any supported layout -> float64 (B, C, H, W) torch tensor."""
    if isinstance(image, torch.Tensor):
        t = image.detach().to(torch.float64)
        if t.ndim == 2:
            return t[None, None]
        if t.ndim == 3:
            return t[None]
        return t
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 2:
        array = array[None, None]
    else:
        array = np.moveaxis(array, -1, 0)[None]
    return torch.from_numpy(np.ascontiguousarray(array))


def prepare(image: Array, protocol: Protocol) -> torch.Tensor:
    """Apply the protocol to one image or batch: quantize, take luma of colour images, crop the border.

    As in MATLAB's evaluation scripts, luma is taken only of 3-channel images; a greyscale image
    (Set14's `bridge`) is compared on its grey values directly. Returns float64 (B, C, H, W) in [0, 255].
    """
    batch = _to_batch(image)
    batch = ops.quantize(batch, protocol.quantize) if protocol.quantize else batch
    if protocol.y_channel and batch.shape[1] == 3:
        rounding = protocol.round_y and protocol.quantize is not None
        batch = ops.rgb2y(batch, protocol.y_formula, rounding=rounding)[:, None]
    return ops.shave(batch, protocol.crop_border) * 255.0


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")


def psnr_batch(output: Array, target: Array, protocol: Protocol = Protocol()) -> torch.Tensor:
    """Per-image PSNR (dB, peak 255) of a batch; +inf for identical images."""
    a, b = prepare(output, protocol), prepare(target, protocol)
    _check_pair(a, b)
    mse = ((a - b) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _valid_gaussian_filter(x: torch.Tensor) -> torch.Tensor:
    """Wang's 11x11 Gaussian (sigma 1.5), 'valid' region; applied as two 1-D passes (it is separable)."""
    channels = x.shape[1]
    g = _gaussian_1d().to(x.device)
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def ssim_batch(output: Array, target: Array, protocol: Protocol = Protocol()) -> torch.Tensor:
    """Per-image SSIM as Wang et al.'s MATLAB `ssim_index`: 11x11 Gaussian (sigma 1.5), K=(0.01, 0.03),
    L=255, 'valid' filtering; colour images (when not on Y) average the per-channel SSIM."""
    a, b = prepare(output, protocol), prepare(target, protocol)
    _check_pair(a, b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = _valid_gaussian_filter
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(1)


def _blocking_effect_factor(image: torch.Tensor, block: int = 8) -> torch.Tensor:
    """BEF of Yim & Bovik (2011): excess squared difference across 8x8 block edges, per image."""
    _, _, height, width = image.shape
    edge_cols = torch.arange(block - 1, width - 1, block, device=image.device)
    edge_rows = torch.arange(block - 1, height - 1, block, device=image.device)
    col_diff = (image[..., :, 1:] - image[..., :, :-1]) ** 2  # differences between columns j and j+1
    row_diff = (image[..., 1:, :] - image[..., :-1, :]) ** 2
    col_edge = torch.zeros(width - 1, dtype=torch.bool, device=image.device)
    col_edge[edge_cols] = True
    row_edge = torch.zeros(height - 1, dtype=torch.bool, device=image.device)
    row_edge[edge_rows] = True
    boundary = col_diff[..., col_edge].flatten(1).sum(1) + row_diff[..., row_edge, :].flatten(1).sum(1)
    inner = col_diff[..., ~col_edge].flatten(1).sum(1) + row_diff[..., ~row_edge, :].flatten(1).sum(1)
    channels = image.shape[1]
    n_boundary = channels * (height * int(col_edge.sum()) + width * int(row_edge.sum()))
    n_inner = channels * (height * (width - 1) + width * (height - 1)) - n_boundary
    d_boundary = boundary / max(n_boundary, 1)
    d_inner = inner / max(n_inner, 1)
    eta = math.log2(block) / math.log2(min(height, width))
    return torch.where(d_boundary > d_inner, eta * (d_boundary - d_inner), torch.zeros_like(d_boundary))


def psnr_b_batch(output: Array, target: Array, protocol: Protocol = Protocol(y_channel=True)) -> torch.Tensor:
    """PSNR-B (JPEG deblocking): PSNR with the output's blocking effect factor added to the MSE.

    Block edges sit at multiples of 8 in the image as encoded, so use crop_border=0 (the JPEG convention).
    """
    a, b = prepare(output, protocol), prepare(target, protocol)
    _check_pair(a, b)
    mse = ((a - b) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / (mse + _blocking_effect_factor(a)))


def _single(values: torch.Tensor) -> float:
    if values.numel() != 1:
        raise ValueError("expected one image; use the *_batch functions for batches")
    return float(values.item())


def psnr(
    output: Array,
    target: Array,
    *,
    y_channel: bool = False,
    crop_border: int = 0,
    quantize: str | None = "round",
    y_formula: str = "matlab",
    round_y: bool = True,
) -> float:
    """PSNR (dB, peak 255) of one image; see `Protocol` for the switches."""
    return _single(psnr_batch(output, target, Protocol(y_channel, crop_border, quantize, y_formula, round_y)))


def ssim(
    output: Array,
    target: Array,
    *,
    y_channel: bool = False,
    crop_border: int = 0,
    quantize: str | None = "round",
    y_formula: str = "matlab",
    round_y: bool = True,
) -> float:
    """SSIM (Wang's MATLAB definition) of one image; see `Protocol` for the switches."""
    return _single(ssim_batch(output, target, Protocol(y_channel, crop_border, quantize, y_formula, round_y)))


def psnr_b(
    output: Array,
    target: Array,
    *,
    y_channel: bool = True,
    crop_border: int = 0,
    quantize: str | None = "round",
    y_formula: str = "matlab",
    round_y: bool = True,
) -> float:
    """PSNR-B of one image (Y or grey by default, as JPEG papers report it)."""
    return _single(psnr_b_batch(output, target, Protocol(y_channel, crop_border, quantize, y_formula, round_y)))


def l1_pm1(output: Array, target: Array) -> float:
    """Mean absolute error with images mapped to [-1, 1], as DL-Net reports l1 (2x the [0, 1] error)."""
    a, b = _to_batch(output), _to_batch(target)
    _check_pair(a, b)
    return float((2 * (a - b)).abs().mean())


def l2_pm1(output: Array, target: Array) -> float:
    """Mean squared error with images mapped to [-1, 1], as DL-Net reports l2 (4x the [0, 1] error)."""
    a, b = _to_batch(output), _to_batch(target)
    _check_pair(a, b)
    return float(((2 * (a - b)) ** 2).mean())


# ------------------------------------------------------------------------ no-reference (perceptual)

NO_REFERENCE = ("piqe",)


def piqe(image: Array) -> float:
    """PIQE (Venkatanath et al. 2015; MATLAB's `piqe`): a no-reference, opinion-unaware quality score of one
    RGB or grey image, 0 (best) .. 100, from the `pypiqe` package (a port tested against MATLAB). It needs no
    learned weights, which is why it is the perceptual measure here: LPIPS needs AlexNet/VGG weights that
    cannot be downloaded on this machine, pyiqa's NIQE downloads its parameters, and the BRISQUE package
    fails with current SciPy. The image is rounded to uint8 first, as MATLAB scores image files."""
    _piqe = _load_piqe()
    batch = _to_batch(image)
    if batch.shape[0] != 1:
        raise ValueError("piqe scores one image at a time")
    array = (batch[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return float(_piqe(array[..., 0] if array.shape[2] == 1 else array)[0])


def _load_piqe():
    try:
        from pypiqe import piqe as _piqe
    except ImportError as err:  # an optional extra: say how to get it, in one line
        raise MissingPackage("PIQE needs the optional package pypiqe: pip install 'restorekit[perceptual]'") from err
    return _piqe


def require_no_reference(name: str) -> None:
    """Fail early, in one line, when a requested measure is unknown or its package is not installed."""
    if name not in NO_REFERENCE:
        raise ValueError(f"unknown no-reference measure {name!r}; choose from: {', '.join(NO_REFERENCE)}")
    _load_piqe()


def no_reference(name: str, image: Array) -> float:
    """The no-reference measure `name` (one of NO_REFERENCE) of one image."""
    if name == "piqe":
        return piqe(image)
    raise ValueError(f"unknown no-reference measure {name!r}; choose from: {', '.join(NO_REFERENCE)}")


# ---------------------------------------------------------------------------------------------------
# Detection: mean average precision at an IoU threshold (the distortion detector, thesis Tables 6.2-6.3)
# ---------------------------------------------------------------------------------------------------
# PASCAL VOC's protocol, as the thesis's SSD code reports it: detections of a class sorted by score, each matched
# greedily to the unmatched ground-truth box of that class it overlaps most (IoU >= threshold, else a false
# positive), AP = the area under the precision-recall curve with precision made monotone (VOC 2010+ all-point
# interpolation), mAP = the mean over classes with ground truth. pycocotools computes COCO's variant (101 recall
# points, area ranges, at most 100 detections) and is not what the thesis's numbers mean.

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 (exclusive)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def average_precision(hits: list[bool], positives: int) -> float:
    """VOC all-point AP of detections already sorted by descending score (`hits`: true positive or not)."""
    if positives == 0:
        return float("nan")
    if not hits:
        return 0.0
    tp = np.cumsum(hits, dtype=float)
    recall = np.concatenate([[0.0], tp / positives, [1.0]])
    precision = np.concatenate([[1.0], tp / np.arange(1, len(hits) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone: the best precision at any higher recall
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def mean_average_precision(predictions: list[list[tuple[str, float, Box]]], truths: list[list[tuple[str, Box]]],
                           iou: float = 0.5) -> dict[str, float]:
    """Per-class AP and their mean ('mAP') over a set of images: `predictions[i]` are (class, score, box) of
    image i, `truths[i]` its (class, box) ground truth."""
    classes = sorted({name for image in truths for name, _ in image})
    result = {}
    for name in classes:
        scored = sorted(((score, i, box) for i, image in enumerate(predictions) for c, score, box in image
                         if c == name), key=lambda s: -s[0])
        unmatched = {i: [box for c, box in image if c == name] for i, image in enumerate(truths)}
        hits = []
        for _, i, box in scored:
            overlaps = [box_iou(box, truth) for truth in unmatched[i]]
            best = int(np.argmax(overlaps)) if overlaps else -1
            hits.append(best >= 0 and overlaps[best] >= iou)
            if hits[-1]:
                unmatched[i].pop(best)
        result[name] = average_precision(hits, sum(c == name for image in truths for c, _ in image))
    result["mAP"] = float(np.mean([result[name] for name in classes])) if classes else float("nan")
    return result
