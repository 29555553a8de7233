"""Running a model on one image: device placement, channel adaptation, padding to size requirements.

Tiling, self-ensemble and half precision build on `run_model` (see the product issue); evaluation
uses it directly so that numbers and the product share one code path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ModelError


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_info(model: nn.Module):
    from restorekit.models import ModelInfo

    return getattr(model, "info", None) or ModelInfo(family="unknown", task="any")


def _adapt_channels(image: torch.Tensor, wanted: int | None) -> tuple[torch.Tensor, bool]:
    """Grey images through colour models are replicated to RGB (and averaged back); the reverse is an error."""
    have = image.shape[-3]
    if wanted is None or wanted == have:
        return image, False
    if have == 1 and wanted == 3:
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:]), True
    raise ModelError(f"the model takes {wanted}-channel images, this image has {have}")


@torch.no_grad()
def run_model(model: nn.Module, image: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Restore one CHW (or BCHW) float image in [0, 1]; returns the same layout on the CPU, unclamped."""
    info = model_info(model)
    device = torch.device(device) if isinstance(device, str) else device
    batch = image[None] if image.ndim == 3 else image
    batch, replicated = _adapt_channels(batch, info.in_channels)
    height, width = batch.shape[-2:]
    multiple = max(1, info.size_multiple)
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        batch = F.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    out = model(batch.to(device=device, dtype=dtype)).float().cpu()
    out = out[..., : height * info.scale, : width * info.scale]
    if replicated:
        out = out.mean(dim=-3, keepdim=True)
    return out[0] if image.ndim == 3 else out
