"""Photometric and processing operators: contrast change, non-local-means 'denoising artefacts', identity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from restorekit.degrade.operator import Extras, Level, Operator, register
from restorekit.degrade.params import Param
from restorekit.degrade.seeding import Context


def grey_mean(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1) mean of the ITU-R 601 luma (Pillow's 'L' conversion) of each image."""
    if x.shape[1] == 3:
        luma = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    else:
        luma = x.mean(dim=1, keepdim=True)
    return luma.mean(dim=(-2, -1), keepdim=True)


@register
class Contrast(Operator):
    """Contrast reduced by `level` percent towards the mean grey, as Pillow's ImageEnhance.Contrast
    with factor 1 − level/100 (without its 8-bit rounding of the mean)."""

    name = "contrast"
    primary = "level"
    summary = "contrast change"
    source = "SHDD levels [25, 40] (definition ours: percent contrast reduction)"
    differentiable = True
    params = (Param("level", "float", "percent of contrast removed (negative = increased)", default="25..40", low=-100, high=100),)

    def _apply(self, x: torch.Tensor, levels: Sequence[Level]) -> torch.Tensor:
        factor = torch.tensor([1 - lv["level"] / 100 for lv in levels], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        mean = grey_mean(x)
        return mean + factor * (x - mean)

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        return self._apply(x, levels), [{} for _ in levels]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._apply(x, [level] * x.shape[0])


@register
class NonLocalMeans(Operator):
    """'Denoising artefacts': scikit-image non-local means applied to a clean image (over-smoothing)."""

    name = "nlm"
    primary = "strength"
    summary = "non-local-means denoising artefacts"
    source = "Flickr-Distortion: strength {0.04, 0.06, 0.08}, patch 7, distance 11"
    params = (
        Param("strength", "float", "filter strength h (skimage denoise_nl_means)", default="0.04|0.06|0.08", low=0, high=10),
        Param("patch", "int", "patch size", default="7", low=1, high=31),
        Param("distance", "int", "search distance", default="11", low=1, high=64),
    )

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        # float32 stays float32: scikit-image then runs 25% faster, results within 1e-7 of float64.
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        images = x.detach().to("cpu", dtype).permute(0, 2, 3, 1).numpy()
        jobs = list(zip(images, levels))
        # scikit-image's NLM loop releases the GIL, so the images of a batch run in parallel threads,
        # as many as torch may use (1 inside DataLoader workers): 2 threads ran 2.0x faster here.
        threads = min(torch.get_num_threads(), len(jobs))
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                out = list(pool.map(_nl_means, jobs))
        else:
            out = [_nl_means(job) for job in jobs]
        tensor = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype)
        return tensor.contiguous(), [{} for _ in levels]


def _nl_means(job: tuple[np.ndarray, Level]) -> np.ndarray:
    """scikit-image's fast-mode non-local means of one (H, W, C) image at `level`, as (H, W, C)."""
    from skimage.restoration import denoise_nl_means

    image, level = job
    grey = image.shape[2] == 1
    result = denoise_nl_means(
        image[:, :, 0] if grey else image,
        h=level["strength"],
        patch_size=level["patch"],
        patch_distance=level["distance"],
        channel_axis=None if grey else -1,
        fast_mode=True,
    )
    return result[:, :, None] if grey else result


@register
class Identity(Operator):
    """No degradation (SHDD's fifth 'distortion', and a control row in tables)."""

    name = "identity"
    summary = "no degradation"
    source = "SHDD pool (tests over-restoration of clean regions)"
    differentiable = True

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        return x.clone(), [{} for _ in levels]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return x
