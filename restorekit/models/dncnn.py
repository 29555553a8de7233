"""DnCNN (Zhang, Zuo, Chen, Meng, Zhang, "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for
Image Denoising", IEEE TIP 2017): the standard denoising baseline, residual (predicts the noise).

Layout follows the released KAIR weights so they load by key: `model.{0,2,...}` are convs, the odd
indices ReLUs (batch norm merged into the convs). `batch_norm=True` builds the trainable original.

The authors' MatConvNet releases (cszn/DnCNN @ e93b278 `model/*.mat`, no license stated; read with
`restorekit.models._matconvnet.read_mat`) load too. Their test models already have batch norm merged
into the convs (20 conv + 19 ReLU layers, no `bnorm` layer), so they map onto the merged layout; a file
that still holds `bnorm` layers has them folded into the preceding conv here (`fold_batch_norm`), so
one inference layout serves every release:
* colour (3 -> 3) files, e.g. CDnCNN-B `GD_Color_Blind.mat`, load as `dncnn` (colour blind denoiser);
* grey (1 -> 1) files load as `dncnn3`: DnCNN-3 `DnCNN3.mat`, ONE model for Gaussian denoising, bicubic
  SR (on the bicubic-upscaled image: `scale` is a call argument) and JPEG deblocking. A grey-only
  MatConvNet denoiser (`GD_Gray_Blind.mat`) has the same tensors and would load as `dncnn3` too: the
  network runs the same, only its declared tasks are wider than what it was trained for.
"""

from __future__ import annotations

import torch
from torch import nn

from restorekit import ops
from restorekit.errors import ModelError
from restorekit.models import register_model
from restorekit.models._matconvnet import conv_weight, matconvnet_layers, plain_convs, vector
from restorekit.models._weight_init import apply_init

StateDict = dict[str, torch.Tensor]


class DnCNN(nn.Module):
    def __init__(self, in_channels: int = 1, depth: int = 17, features: int = 64, batch_norm: bool = False,
                 init: str = "pytorch"):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(features, features, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(features, eps=1e-4, momentum=0.95))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(features, in_channels, 3, padding=1))
        self.model = nn.Sequential(*layers)
        apply_init(self, init, [self.model[-1]])  # the paper: He init; "pytorch" (default) as KAIR's code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.model(x)


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    """Builder arguments from a merged-BN DnCNN state dict (KAIR's `model.N.weight` keys), else None.

    A 4-in/3-out (or 2-in/1-out) file of the same layout is FDnCNN (image + noise-level map in, image
    out): recognised and refused in one line rather than loaded wrongly."""
    conv_keys = sorted((k for k in state if k.startswith("model.") and k.endswith(".weight")),
                       key=lambda k: int(k.split(".")[1]) if k.split(".")[1].isdigit() else -1)
    if not conv_keys or any(not k.split(".")[1].isdigit() or state[k].ndim != 4 for k in conv_keys):
        return None
    indices = [int(k.split(".")[1]) for k in conv_keys]
    if indices != list(range(0, 2 * len(indices), 2)) or len(state) != 2 * len(indices):
        return None
    first, last = state[conv_keys[0]], state[conv_keys[-1]]
    if last.shape[0] % 4 == 0 and 0 < first.shape[1] - last.shape[0] <= last.shape[0] // 4:
        return None  # FFDNet's layout (pixel-unshuffled image + noise map in): models/ffdnet.py
    if last.shape[0] != first.shape[1]:
        kind = "FDnCNN (image + noise-level map in)" if first.shape[1] == last.shape[0] + 1 else "not DnCNN"
        raise ModelError(f"a DnCNN-layout file with {first.shape[1]} input and {last.shape[0]} output channels: "
                         f"{kind}, which restorekit does not load")
    return {"in_channels": first.shape[1], "depth": len(indices), "features": first.shape[0], "batch_norm": False}


# ------------------------------------------------------------------------- MatConvNet releases


def fold_batch_norm(weight: torch.Tensor, bias: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor,
                    moments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv then MatConvNet `bnorm` as one conv (inference only). `moments` is (C, 2) [mean, sigma], the
    stored sigma already holding sqrt(var + epsilon): vl_nnbnorm applies gain * (x - mean) / sigma + shift."""
    mean, sigma = moments[:, 0], moments[:, 1]
    factor = gain.reshape(-1) / sigma
    return weight * factor[:, None, None, None], (bias - mean) * factor + shift.reshape(-1)


def _matconvnet_convs(state: StateDict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) per conv of a MatConvNet DnCNN (conv, [bnorm,] relu, ..., conv), BN folded; [] if not one."""
    layers = matconvnet_layers(state)
    kinds = [kind for kind, _ in layers]
    if len(kinds) < 3 or kinds[0] != "conv" or kinds[-1] != "conv" or set(kinds) - {"conv", "bnorm", "relu"}:
        return []
    convs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for kind, fields in layers:
        if kind == "conv":
            weight = conv_weight(fields["weights.0"])
            bias = vector(fields["weights.1"]) if "weights.1" in fields else torch.zeros(weight.shape[0])
            convs.append((weight, bias))
        elif kind == "bnorm":
            convs[-1] = fold_batch_norm(*convs[-1], *(fields[f"weights.{i}"].float() for i in range(3)))
    return convs


def detect_matconvnet(state: StateDict, channels: int) -> dict | None:
    """Builder arguments from a MatConvNet DnCNN with `channels` in and out, else None."""
    convs = _matconvnet_convs(state)
    if not convs or convs[0][0].shape[1] != channels or convs[-1][0].shape[0] != channels:
        return None
    return {"in_channels": channels, "depth": len(convs), "features": int(convs[0][0].shape[0])}


def _merged_layout(state: StateDict, prefix: str) -> StateDict:
    """MatConvNet conv (+ bnorm) layers -> `{prefix}.{2i}.{weight,bias}`; any other state dict unchanged."""
    convs = _matconvnet_convs(state)
    if not convs:
        return state
    converted = {}
    for i, (weight, bias) in enumerate(convs):
        converted[f"{prefix}.{2 * i}.weight"], converted[f"{prefix}.{2 * i}.bias"] = weight, bias
    return converted


def convert(state: StateDict) -> StateDict:
    return _merged_layout(state, "model")


def detect_any(state: StateDict) -> dict | None:
    """KAIR / our layout, or a colour MatConvNet release (grey ones are `dncnn3`)."""
    found = detect_matconvnet(state, 3)
    return {**found, "batch_norm": False} if found else detect(state)


@register_model(
    "dncnn", tasks=("denoise",), summary="DnCNN (Zhang et al. 2017), residual denoiser",
    fp16=True, bf16=True, detect=detect_any, convert=convert,
    # bf16 measured on released weights (32x32 random image vs fp32): DnCNN-25 (grey, 17 layers) 0.95/255,
    # CDnCNN-B (colour, 20 layers) 6.01/255, over the 2/255 bar; fp16 0.75/255 on CDnCNN-B.
    resolve=lambda a: {"in_channels": a.get("in_channels", 1), "receptive_field": a.get("depth", 17),
                       "bf16": a.get("in_channels", 1) == 1},
    test_configs=({"depth": 4, "features": 8}, {"in_channels": 3, "depth": 3, "features": 8},
                  {"depth": 4, "features": 8, "batch_norm": True}, {"depth": 4, "features": 8, "init": "kaiming"}),
)
def dncnn(in_channels: int = 1, depth: int = 17, features: int = 64, batch_norm: bool = False,
          init: str = "pytorch") -> DnCNN:
    return DnCNN(in_channels, depth, features, batch_norm, init)


class DnCNN3(nn.Module):
    """DnCNN-3: the merged grey DnCNN stack, stored under `body` so that its state dict is not taken for a
    grey `dncnn` (the tasks differ, the tensors would not)."""

    def __init__(self, depth: int = 20, features: int = 64) -> None:
        super().__init__()
        self.body = DnCNN(1, depth, features).model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


def detect_dncnn3(state: StateDict) -> dict | None:
    """A grey MatConvNet DnCNN release (see the module docstring) or ours (`body.{2i}`), else None."""
    found = detect_matconvnet(state, 1)
    if found:
        return {"depth": found["depth"], "features": found["features"]}
    convs = plain_convs(state, "body")
    if len(convs) < 3 or convs[0].shape[1] != 1 or convs[-1].shape[0] != 1:
        return None
    return {"depth": len(convs), "features": int(convs[0].shape[0])}


def call_dncnn3(module: DnCNN3, image: torch.Tensor, scale: int | None = None) -> torch.Tensor:
    """SR: DnCNN-3 restores the MATLAB-bicubic-upscaled image, so the LR image is upscaled first."""
    if scale is not None and int(scale) > 1:
        image = ops.imresize(image, int(scale))
    return module(image)


@register_model(
    "dncnn3", family="dncnn", tasks=("denoise", "sr", "jpeg"),
    summary="DnCNN-3 (Zhang et al. 2017): one grey model for denoising, bicubic SR x2-x4 and JPEG deblocking",
    scales=(1, 2, 3, 4), inputs=("scale",), in_channels=1, detect=detect_dncnn3,
    # Measured on the released weights (32x32 random image vs fp32): scale 1 fp16 0.26/255, bf16 1.81/255;
    # x4 (bicubic first) fp16 1.76/255, bf16 24.9/255: both stay False.
    convert=lambda state: _merged_layout(state, "body"), call=call_dncnn3,
    resolve=lambda a: {"receptive_field": a.get("depth", 20)},
    test_configs=({"depth": 3, "features": 8},),
)
def dncnn3(depth: int = 20, features: int = 64) -> DnCNN3:
    return DnCNN3(depth, features)
