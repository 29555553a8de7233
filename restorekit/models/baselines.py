"""Reference points every table needs: `identity` (the degraded input itself) and MATLAB `bicubic` SR."""

from __future__ import annotations

import torch
from torch import nn

from restorekit import ops
from restorekit.models import ModelInfo, register_model


class Identity(nn.Module):
    """Returns its input: the 'do nothing' row of a denoising/JPEG/inpainting table."""

    def __init__(self) -> None:
        super().__init__()
        self.info = ModelInfo(family="baseline", task="any", in_channels=None, supports_half=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Bicubic(nn.Module):
    """MATLAB bicubic upscaling by an integer factor: the 'Bicubic' row of every SR table."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = int(scale)
        self.info = ModelInfo(
            family="baseline", task="sr", scale=self.scale, in_channels=None, receptive_field=4,
            supports_half=True, arguments={"scale": self.scale},
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.imresize(x, self.scale)


@register_model("identity")
def identity(**_: object) -> Identity:
    return Identity()


@register_model("bicubic")
def bicubic(scale: int = 4, **_: object) -> Bicubic:
    return Bicubic(scale)
