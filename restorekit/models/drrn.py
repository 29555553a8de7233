"""DRRN (Tai, Yang, Liu, "Image Super-Resolution via Deep Recursive Residual Network", CVPR 2017), B1U9.

Y channel of the MATLAB-bicubic-upscaled LR image, like VDSR (one model for x2/x3/x4, the scale a call
argument). One recursive block of U residual units that share one pair of 3x3 convs (pre-activation:
ReLU-conv-ReLU-conv), each unit's output added to the block's input H0 (local residual learning); a 3x3
output conv after a ReLU and the global skip from the upscaled input. Width 128. The convs have no bias, as
in the widely used PyTorch port: DRRN_B1U9 then has exactly the paper's 297,216 weights
(1x128x9 + 2x128x128x9 + 128x9), the "297K" of Tai et al.'s Table 1. No batch norm (neither port keeps it).

No released DRRN weights exist in this workspace (../shared/reference-weights has none): this family is
trained here or not at all. The DL-Net paper's variant (LR-resolution features, concat every 3 recursions,
1x1 to 64 maps, LeakyReLU 0.05, a scale-specific upscaling layer, ~0.36M) is not built: its Fig. 6 with the
upscaling layer and kernel sizes is not in the text we have (spec 1.3(b) ⚠).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from restorekit import ops
from restorekit.models import register_model

StateDict = dict[str, torch.Tensor]


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class DRRN(nn.Module):
    def __init__(self, units: int = 9, features: int = 128, channels: int = 1) -> None:
        super().__init__()
        self.units = units
        self.input = _conv(channels, features)
        self.recursion = nn.ModuleList([_conv(features, features), _conv(features, features)])  # shared by all units
        self.output = _conv(features, channels)
        for conv in self.modules():  # MSRA, as the paper
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        z, h = self.split(x, scale)
        return h(z)

    def split(self, x: torch.Tensor, scale: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """DL-Net's split (restorekit.models.dlnet), also the forward's two halves: z = the last unit's sum
        before the output ReLU (HR size); h(z) = upscaled x + output conv(ReLU(z))."""
        if int(scale) > 1:
            x = ops.imresize(x, int(scale))
        first, second = self.recursion
        h0 = self.input(x)
        t = h0
        for _ in range(self.units):
            t = second(F.relu(first(F.relu(t)))) + h0
        return t, lambda z: x + self.output(F.relu(z))


def detect(state: StateDict) -> dict | None:
    """Our layout (`input`, `recursion.{0,1}`, `output`, no biases), else None; the unit count is not in the
    tensors (they are shared), so it is passed with the weights (a card's arguments), default 9."""
    if set(state) != {"input.weight", "recursion.0.weight", "recursion.1.weight", "output.weight"}:
        return None
    first = state["input.weight"]
    return {"features": int(first.shape[0]), "channels": int(first.shape[1])}


@register_model(
    "drrn", tasks=("sr",), summary="DRRN B1U9 (Tai et al. 2017): recursive residual SR on Y, one model for x2/x3/x4",
    scales=(2, 3, 4), inputs=("scale",), in_channels=1, detect=detect,
    # 2 + 2U convs at HR size: 1 + U LR pixels at x2, plus the bicubic kernel's 2 taps and one of margin.
    receptive_field=13,
    resolve=lambda a: {"in_channels": a.get("channels", 1), "receptive_field": a.get("units", 9) + 4},
    test_configs=({"units": 2, "features": 8}, {"units": 3, "features": 4}),
)
def drrn(units: int = 9, features: int = 128, channels: int = 1) -> DRRN:
    return DRRN(units, features, channels)
