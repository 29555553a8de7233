"""Reference points every table needs: `identity` (the degraded input itself) and MATLAB `bicubic` SR."""

from __future__ import annotations

import torch
from torch import nn

from restorekit import ops
from restorekit.models import register_model


class Identity(nn.Module):
    """Returns its input: the 'do nothing' row of a denoising/JPEG/inpainting table."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Bicubic(nn.Module):
    """MATLAB bicubic upscaling: the 'Bicubic' row of every SR table (a fractional factor too, e.g. x3.5 beside
    AdaFM's SR slider; the output side is MATLAB's ceil(scale * side))."""

    def __init__(self, scale: float = 4) -> None:
        super().__init__()
        self.scale = ops.as_scale(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.imresize(x, self.scale)


@register_model("identity", family="baseline", tasks=("any",), summary="the degraded input itself",
                in_channels=None, fp16=True, bf16=True)
def identity() -> Identity:
    return Identity()


# bf16 measured (tests/test_model_contract.py, 32x32 uniform noise vs fp32): x2 1.3-1.5/255, x3 1.5-2.4/255,
# x4 1.9-2.4/255 max abs over seeds, past the 2/255 bar (two separable bf16 products); fp16 runs the fp32 path.
@register_model("bicubic", family="baseline", tasks=("sr",), summary="MATLAB bicubic upscaling",
                in_channels=None, receptive_field=4, fp16=True, bf16=False,
                resolve=lambda a: {"scales": (ops.as_scale(a.get("scale", 4)),)},
                test_configs=({"scale": 2}, {"scale": 3}, {"scale": 4}))
def bicubic(scale: float = 4) -> Bicubic:
    return Bicubic(scale)
