"""RIDNet (Anwar & Barnes, "Real Image Denoising with Feature Attention", ICCV 2019): the strongest baseline of the
thesis's SHDD table (Table 7.1: 32.94 dB on SHDD-moderate against MEPSNet's 33.47), a blind restorer.

    head conv 3->64, ReLU; 4 EAM blocks; tail conv 64->3; + the input image (global residual)
    EAM = merge-and-run (two branches of two dilated 3x3 convs, dilations 1-2 and 3-4, each + ReLU, concatenated,
          3x3 conv + ReLU, + input) -> residual block (conv-ReLU-conv, + input, ReLU) -> enhanced residual block
          (conv-ReLU-conv-ReLU-1x1 conv, + input, ReLU) -> channel attention (GAP, 1x1 C -> C/16, ReLU, 1x1 back,
          sigmoid, scale)

The layout and widths follow the authors' release as ported by BasicSR (`ridnet_arch.py`, read for the facts): 64
channels, 4 EAMs, squeeze 16 (1,499,347 parameters here, the paper's 1.49M). Inputs in [0, 1] minus the DIV2K mean
(the release's MeanShift works at range 255). The channel attention pools the whole input, so the model is not
tiled (tiling "whole"), as MEPSNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.models import register_model
from restorekit.models._weight_init import apply_init

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


def conv3(cin: int, cout: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)


class MergeAndRun(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.near = nn.ModuleList([conv3(features, features, 1), conv3(features, features, 2)])
        self.far = nn.ModuleList([conv3(features, features, 3), conv3(features, features, 4)])
        self.merge = conv3(2 * features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        near, far = x, x
        for a, b in zip(self.near, self.far, strict=True):
            near, far = F.relu(a(near)), F.relu(b(far))
        return F.relu(self.merge(torch.cat([near, far], dim=1))) + x


class EAM(nn.Module):
    """Enhancement attention module: merge-and-run, residual block, enhanced residual block, channel attention."""

    def __init__(self, features: int, squeeze: int) -> None:
        super().__init__()
        self.merge = MergeAndRun(features)
        self.residual = nn.ModuleList([conv3(features, features), conv3(features, features)])
        self.enhanced = nn.ModuleList([conv3(features, features), conv3(features, features),
                                       nn.Conv2d(features, features, 1)])
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(features, features // squeeze, 1),
                                       nn.ReLU(inplace=True), nn.Conv2d(features // squeeze, features, 1), nn.Sigmoid())

    def residual_ends(self) -> list[nn.Conv2d]:
        """The convs whose output is added to a skip: scaled at "kaiming" init so the blocks start near the
        identity (unscaled, He init doubles the signal per block: output ~2 off the identity at 4 blocks)."""
        return [self.merge.merge, self.residual[1], self.enhanced[2]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.merge(x)
        x = F.relu(self.residual[1](F.relu(self.residual[0](x))) + x)
        first, second, last = self.enhanced
        x = F.relu(last(F.relu(second(F.relu(first(x))))) + x)
        return x * self.attention(x)


class RIDNet(nn.Module):
    def __init__(self, features: int = 64, blocks: int = 4, squeeze: int = 16, channels: int = 3,
                 init: str = "pytorch") -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN[:channels] if channels == 3 else (0.5,)).view(
            1, channels, 1, 1), persistent=False)
        self.head = conv3(channels, features)
        self.body = nn.Sequential(*(EAM(features, squeeze) for _ in range(blocks)))
        self.tail = conv3(features, channels)
        # "pytorch" (default): the reference code's; "kaiming" scales the convs that end a residual branch too
        apply_init(self, init, [self.tail] + [end for block in self.body for end in block.residual_ends()])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image + self.tail(self.body(F.relu(self.head(image - self.mean))))


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    """Our layout (`head`, `body.N.merge`, `tail`): widths and block count from the tensors."""
    if "body.0.merge.merge.weight" not in state or "head.weight" not in state:
        return None
    features = int(state["head.weight"].shape[0])
    return {"features": features, "blocks": len({k.split(".")[1] for k in state if k.startswith("body.")}),
            "squeeze": features // int(state["body.0.attention.1.weight"].shape[0]),
            "channels": int(state["head.weight"].shape[1])}


@register_model(
    "ridnet", tasks=("restore", "denoise"), blind=True, tiling="whole", detect=detect,
    summary="RIDNet (Anwar & Barnes 2019): blind denoiser with feature attention, the thesis's SHDD baseline",
    resolve=lambda a: {"in_channels": a.get("channels", 3)},
    test_configs=({"features": 16, "blocks": 1, "squeeze": 4}, {"features": 8, "blocks": 2, "squeeze": 2,
                                                                 "channels": 1, "init": "kaiming"}),
)
def ridnet(features: int = 64, blocks: int = 4, squeeze: int = 16, channels: int = 3, init: str = "pytorch"
           ) -> RIDNet:
    return RIDNet(features, blocks, squeeze, channels, init)
