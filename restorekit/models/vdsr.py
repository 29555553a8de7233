"""VDSR (Kim, Lee, Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional Networks", CVPR 2016).

Twenty 3x3 convolutions of 64 channels on the Y channel of the MATLAB-bicubic-upscaled LR image; the
network predicts the residual (output = upscaled input + net). One model serves x2, x3 and x4, so the
scale is a call argument (`model(lr_y, scale=3)`), never module state.

Released weights: huangzehao/caffe-vdsr @ 5a83923 `Test/VDSR_Official.mat` (the authors' model converted
by that repository; MIT license), a MATLAB v5 file `model.weight{i}` (k, k, in, out) / `model.bias{i}`,
read with `restorekit.models._matconvnet.read_mat` and converted here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from restorekit import ops
from restorekit.models import register_model
from restorekit.models._matconvnet import conv_weight, plain_convs, vector
from restorekit.models._weight_init import apply_init

StateDict = dict[str, torch.Tensor]


class VDSR(nn.Module):
    def __init__(self, depth: int = 20, features: int = 64, channels: int = 1, init: str = "pytorch") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, channels, 3, padding=1))
        self.layers = nn.Sequential(*layers)
        apply_init(self, init, [self.layers[-1]])  # the paper: He init; "pytorch" is the default

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        """x: the LR image; MATLAB-bicubic upscaled by `scale` first (scale 1: x is already upscaled)."""
        if int(scale) > 1:
            x = ops.imresize(x, int(scale))
        return x + self.layers(x)

    def split(self, x: torch.Tensor, scale: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """DL-Net's split (restorekit.models.dlnet): z = the last hidden conv's output before its ReLU, at HR
        size since this VDSR runs on the bicubic-upscaled image; h(z) = bicubic(x) + last conv(ReLU(z)), the
        bicubic term constant in z. The released weights are used as they are (spec 1.3(b) places z at LR
        size in the paper's retrained VDSR, which has no released weights)."""
        if int(scale) > 1:
            x = ops.imresize(x, int(scale))
        last = self.layers[-1]
        return self.layers[:-2](x), lambda z: x + last(F.relu(z))


def _released_convs(state: StateDict) -> int:
    """Number of `model.weight.{i}` / `model.bias.{i}` pairs of a caffe-vdsr .mat file, else 0."""
    count = sum(1 for k in state if k.startswith("model.weight."))
    expected = {f"model.{kind}.{i}" for kind in ("weight", "bias") for i in range(count)}
    return count if count >= 3 and set(state) == expected else 0


def detect(state: StateDict) -> dict | None:
    """Builder arguments from the released .mat layout or ours (`layers.{0,2,...}.weight`), else None."""
    count = _released_convs(state)
    if count:
        first, last = state["model.weight.0"], state[f"model.weight.{count - 1}"]
        if first.ndim != 4 or first.shape[:2] != (3, 3):
            return None
        out_channels = last.shape[3] if last.ndim == 4 else 1
        if first.shape[2] != out_channels:
            return None
        return {"depth": count, "features": int(first.shape[3]), "channels": int(first.shape[2])}
    convs = plain_convs(state, "layers")
    if len(convs) < 3 or convs[0].shape[1] != convs[-1].shape[0]:
        return None
    return {"depth": len(convs), "features": int(convs[0].shape[0]), "channels": int(convs[0].shape[1])}


def convert(state: StateDict) -> StateDict:
    """The released layout (conv i at `model.weight.{i}`, MATLAB order) -> `layers.{2i}.weight` (ours as is)."""
    count = _released_convs(state)
    if not count:
        return state
    converted = {}
    for i in range(count):
        converted[f"layers.{2 * i}.weight"] = conv_weight(state[f"model.weight.{i}"])
        converted[f"layers.{2 * i}.bias"] = vector(state[f"model.bias.{i}"])
    return converted


@register_model(
    "vdsr", tasks=("sr",), summary="VDSR (Kim et al. 2016): 20-layer residual SR on Y, one model for x2/x3/x4",
    scales=(2, 3, 4), inputs=("scale",), in_channels=1,
    # Measured on the released weights at x4 (32x32 random LR vs fp32): fp16 3.75/255, bf16 48.9/255 (the
    # 20-layer residual in bf16 on top of a bf16 bicubic image): both stay False.
    # 20 convs see 20 HR pixels each side: 10 LR pixels at x2, plus the bicubic kernel's 2 taps.
    receptive_field=12, detect=detect, convert=convert,
    resolve=lambda a: {"in_channels": a.get("channels", 1), "receptive_field": -(-a.get("depth", 20) // 2) + 2},
    test_configs=({"depth": 3, "features": 8}, {"depth": 4, "features": 4}),
)
def vdsr(depth: int = 20, features: int = 64, channels: int = 1, init: str = "pytorch") -> VDSR:
    return VDSR(depth, features, channels, init)


class VDSRRestorer(VDSR):
    """VDSR as a same-size restorer: the residual network on the image itself (no up-scaling), the thesis's SHDD
    baseline (Table 7.1: "VDSR made 4x deeper", 80 layers, to match MEPSNet's parameters; the CPU recipe
    keeps the thesis's depth/width ratio instead: configs/mepsnet/baseline_vdsr_shdd_moderate_cpu.yaml)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x, 1)


@register_model(
    "vdsr_restore", tasks=("restore", "denoise"), blind=True,
    summary="VDSR as a same-size blind restorer (the thesis's 4x-deeper SHDD baseline, ch. 7)",
    # loaded with a card only: its tensors are VDSR's, which `vdsr`'s detector claims
    resolve=lambda a: {"in_channels": a.get("channels", 3), "receptive_field": a.get("depth", 80)},
    test_configs=({"depth": 3, "features": 8}, {"depth": 4, "features": 4, "channels": 1, "init": "kaiming"}),
)
def vdsr_restore(depth: int = 80, features: int = 64, channels: int = 3, init: str = "pytorch") -> VDSRRestorer:
    return VDSRRestorer(depth, features, channels, init)
