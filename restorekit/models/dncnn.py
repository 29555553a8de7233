"""DnCNN (Zhang et al., TIP 2017): the standard denoising baseline, residual (predicts the noise).

Layout follows the released KAIR weights so they load by key: `model.{0,2,...}` are convs, the odd
indices ReLUs (batch norm merged into the convs). `batch_norm=True` builds the trainable original.
"""

from __future__ import annotations

import torch
from torch import nn

from restorekit.models import ModelInfo, register_model


class DnCNN(nn.Module):
    def __init__(self, in_channels: int = 1, depth: int = 17, features: int = 64, batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(features, features, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(features, eps=1e-4, momentum=0.95))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(features, in_channels, 3, padding=1))
        self.model = nn.Sequential(*layers)
        self.info = ModelInfo(
            family="dncnn", task="denoise", in_channels=in_channels, receptive_field=depth,
            supports_half=True,
            arguments={"in_channels": in_channels, "depth": depth, "features": features, "batch_norm": batch_norm},
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.model(x)


@register_model("dncnn")
def dncnn(in_channels: int = 1, depth: int = 17, features: int = 64, batch_norm: bool = False) -> DnCNN:
    return DnCNN(in_channels, depth, features, batch_norm)


def detect_dncnn(state: dict[str, torch.Tensor]) -> dict | None:
    """Architecture arguments from a merged-BN DnCNN state dict (KAIR's `model.N.weight` keys), else None."""
    conv_keys = sorted((k for k in state if k.startswith("model.") and k.endswith(".weight")),
                       key=lambda k: int(k.split(".")[1]))
    if not conv_keys or any(state[k].ndim != 4 for k in conv_keys):
        return None
    indices = [int(k.split(".")[1]) for k in conv_keys]
    if indices != list(range(0, 2 * len(indices), 2)) or len(state) != 2 * len(indices):
        return None
    first, last = state[conv_keys[0]], state[conv_keys[-1]]
    return {"in_channels": first.shape[1], "depth": len(indices), "features": first.shape[0], "batch_norm": False}
