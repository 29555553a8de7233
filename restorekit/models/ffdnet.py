"""FFDNet (Zhang, Zuo, Zhang, "FFDNet: Toward a Fast and Flexible Solution for CNN-Based Image Denoising",
IEEE TIP 2018).

The image is pixel-unshuffled by 2 (grey: 4 sub-images, colour: 12), concatenated with a noise-level
MAP at that half resolution (sigma / 255; ONE map channel in both released models: the colour file's
first conv takes 13 channels, not 12 + 3), passed through plain
conv+ReLU layers (grey 15 x 64, colour 12 x 96) and pixel-shuffled back; the output is the clean
image (no residual). The map is the field's standard continuous strength control: `model(x, level=25)`
(sigma on the 0-255 scale, what `--level` passes) or `model(x, level_map=m)` with a per-pixel sigma map
of the image's size (spatially variant noise).

Released weights: cszn/FFDNet @ e787f46 `models/FFDNet_gray.mat`, `models/FFDNet_color.mat` (no license
stated), MatConvNet v7.3 files read with `restorekit.models._matconvnet.read_mat` and converted here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ModelError
from restorekit.models import register_model
from restorekit.models._matconvnet import matconvnet_convs, matconvnet_layers

StateDict = dict[str, torch.Tensor]


class FFDNet(nn.Module):
    def __init__(self, channels: int = 1, features: int = 64, depth: int = 15, map_channels: int = 1) -> None:
        super().__init__()
        self.channels, self.map_channels = channels, map_channels
        layers: list[nn.Module] = [nn.Conv2d(4 * channels + map_channels, features, 3, padding=1),
                                   nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, 4 * channels, 3, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, noise_map: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) with even H and W; noise_map: sigma / 255 at half resolution (B, M, H/2, W/2)."""
        return F.pixel_shuffle(self.model(torch.cat([F.pixel_unshuffle(x, 2), noise_map], dim=1)), 2)


def noise_map(image: torch.Tensor, channels: int, level: float | None = None,
              level_map: torch.Tensor | None = None) -> torch.Tensor:
    """FFDNet's input map (sigma / 255 at half resolution) from a sigma or a full-size sigma map (0-255)."""
    batch, _, height, width = image.shape
    size = (batch, channels, height // 2, width // 2)
    if level_map is not None:
        sigma = torch.as_tensor(level_map, dtype=image.dtype, device=image.device)
        sigma = sigma.reshape(1, 1, *sigma.shape) if sigma.ndim == 2 else sigma
        sigma = sigma[None] if sigma.ndim == 3 else sigma
        if sigma.shape[-2:] != (height, width):
            raise ModelError(f"level_map is {tuple(sigma.shape[-2:])}, the image {(height, width)}")
        return F.avg_pool2d(sigma, 2).expand(size) / 255.0
    if level is None:
        raise ModelError("FFDNet needs the noise level: pass level (sigma on the 0-255 scale) or level_map")
    return torch.full(size, float(level) / 255.0, dtype=image.dtype, device=image.device)


def call(module: FFDNet, image: torch.Tensor, level: float | None = None,
         level_map: torch.Tensor | None = None) -> torch.Tensor:
    return module(image, noise_map(image, module.map_channels, level, level_map))


def _released(state: StateDict) -> list[tuple[str, dict]]:
    """MatConvNet FFDNet layers (SubP 0.5, concat, conv/relu..., SubP 2), else []."""
    layers = matconvnet_layers(state)
    kinds = [kind for kind, _ in layers]
    if len(kinds) < 5 or kinds[:2] != ["SubP", "concat"] or kinds[-1] != "SubP":
        return []
    return layers


def detect(state: StateDict) -> dict | None:
    """Builder arguments from a released FFDNet .mat (flattened by read_mat) or ours, else None."""
    layers = _released(state)
    if layers:
        convs = matconvnet_convs(layers)
        return _arguments(convs[0][0], convs[-1][0], len(convs))
    indices = sorted(int(k.split(".")[1]) for k in state if k.startswith("model.") and k.endswith(".weight")
                     and k.split(".")[1].isdigit())
    if not indices or indices != list(range(0, 2 * len(indices), 2)) or len(state) != 2 * len(indices):
        return None
    first, last = state["model.0.weight"], state[f"model.{indices[-1]}.weight"]
    if first.ndim != 4 or last.shape[0] % 4 or not 0 < first.shape[1] - last.shape[0] <= last.shape[0] // 4:
        return None
    return _arguments(first, last, len(indices))


def _arguments(first: torch.Tensor, last: torch.Tensor, depth: int) -> dict:
    """(image channels, features, depth, map channels) from the first and last conv weights."""
    channels = last.shape[0] // 4
    return {"channels": channels, "features": int(first.shape[0]), "depth": depth,
            "map_channels": int(first.shape[1]) - 4 * channels}


def subpixel_order(channels: int) -> torch.Tensor:
    """MatConvNet's `vl_nnSubP` numbers the 2x2 offsets (row i, column j) of channel c as 4c + 2j + i
    (column-major), PyTorch's pixel_unshuffle as 4c + 2i + j: entry t is the MatConvNet index of ours."""
    return torch.tensor([4 * c + 2 * j + i for c in range(channels) for i in range(2) for j in range(2)])


def convert(state: StateDict) -> StateDict:
    """MatConvNet conv layers -> `model.{2i}.{weight,bias}` (ours unchanged), with the sub-pixel channels of
    the first conv's input and the last conv's output reordered (measured: the other orders lose 1.4-9 dB)."""
    layers = _released(state)
    if not layers:
        return state
    convs = matconvnet_convs(layers)
    order = subpixel_order(convs[-1][0].shape[0] // 4)
    first, last = convs[0][0], convs[-1]
    convs[0] = (torch.cat([first[:, order], first[:, len(order):]], dim=1), convs[0][1])
    convs[-1] = (last[0][order], last[1][order])
    converted = {}
    for i, (weight, bias) in enumerate(convs):
        converted[f"model.{2 * i}.weight"], converted[f"model.{2 * i}.bias"] = weight, bias
    return converted


@register_model(
    "ffdnet", tasks=("denoise",), summary="FFDNet (Zhang et al. 2018): denoiser with a noise-level map input",
    inputs=("level", "level_map"), in_channels=1, size_multiple=2, detect=detect, convert=convert, call=call,
    # Measured on the released weights (sigma 25, 32x32 random image vs fp32): fp16 0.46/255 grey, 0.51/255
    # colour; bf16 3.58/255 and 4.19/255, over the 2/255 bar.
    fp16=True,
    # depth 3x3 convs at half resolution: 2 * depth input pixels, + 1 for the 2x2 (un)shuffle.
    receptive_field=31,
    resolve=lambda a: {"in_channels": a.get("channels", 1), "receptive_field": 2 * a.get("depth", 15) + 1},
    test_configs=({"depth": 3, "features": 8}, {"channels": 3, "depth": 3, "features": 8},
                  {"channels": 3, "depth": 3, "features": 8, "map_channels": 3}),
)
def ffdnet(channels: int = 1, features: int = 64, depth: int = 15, map_channels: int = 1) -> FFDNet:
    """The released models: grey 1 channel, 64 features, depth 15; colour 3 channels, 96 features, depth 12;
    both with one map channel (KAIR's PyTorch FFDNet feeds one map per colour channel: map_channels=3)."""
    return FFDNet(channels, features, depth, map_channels)
