"""AdaFM (He et al., CVPR 2019): continuous modulation between a start and an end degradation level.

The basic network N_bas (spec 4.3) is trained at the start level. Identity-initialised depthwise
"AdaFM" layers are inserted after each residual-block conv (before the ReLU) and trained alone at the
end level. At test time a single coefficient lambda in [0, 1] interpolates every layer,
g* = I + lambda (g - I), b* = lambda b: lambda = 0 is the basic model, 1 the adapted one, and values in
between restore intermediate levels. This is the toolkit's "strength slider".

Implemented in the residual form out = x + lambda * (dg * x + b) with dg, b zero-initialised, which
equals the paper's identity-initialised g (AdaFM issue #6) and needs no copy of the base weights.

Baselines of the paper's Table 3 share the same body: `norm="bn"` (AdaBN: BN statistics recomputed
on the target level, see `recompute_bn_statistics`) and `norm="cin"` (conditional instance norm: one
affine pair per level, interpolated by the same lambda).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from restorekit import ops
from restorekit.models import register_model

NORMS = ("none", "bn", "cin")
PLACEMENTS = ("resblocks", "all")


class AdaFM(nn.Module):
    """Depthwise k x k filter + bias per channel, identity at initialisation and at strength 0."""

    def __init__(self, channels: int, kernel_size: int = 1):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"AdaFM kernel size must be odd, got {kernel_size}")
        self.delta = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, x: torch.Tensor, strength: float | torch.Tensor = 1.0) -> torch.Tensor:
        if isinstance(strength, (int, float)) and strength == 0:
            return x
        return x + strength * self.delta(x)

    def filters(self) -> torch.Tensor:
        """The paper's g (identity + learned delta) at strength 1, shape (C, 1, k, k)."""
        g = self.delta.weight.detach().clone()
        g[:, :, g.shape[2] // 2, g.shape[3] // 2] += 1.0
        return g


class ConditionalInstanceNorm(nn.Module):
    """Instance norm with one (gamma, beta) per level; lambda blends level 0 (start) and level 1 (end)."""

    def __init__(self, channels: int, n_levels: int = 2):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.gamma = nn.Parameter(torch.ones(n_levels, channels))
        self.beta = nn.Parameter(torch.zeros(n_levels, channels))

    def forward(self, x: torch.Tensor, strength: float | torch.Tensor = 1.0) -> torch.Tensor:
        lam = strength
        gamma = (1 - lam) * self.gamma[0] + lam * self.gamma[-1]
        beta = (1 - lam) * self.beta[0] + lam * self.beta[-1]
        return self.norm(x) * gamma[None, :, None, None] + beta[None, :, None, None]


class _Unmodulated(nn.Identity):
    """No norm / no AdaFM: takes the strength like the modulated layers and ignores it."""

    def forward(self, x: torch.Tensor, strength: float | torch.Tensor = 1.0) -> torch.Tensor:
        return x


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm (the AdaBN baseline) with the modulated layers' call; state-dict keys unchanged."""

    def forward(self, x: torch.Tensor, strength: float | torch.Tensor = 1.0) -> torch.Tensor:
        return super().forward(x)


def _norm(kind: str, channels: int, n_levels: int) -> nn.Module:
    if kind == "bn":
        return _BatchNorm(channels)
    if kind == "cin":
        return ConditionalInstanceNorm(channels, n_levels)
    return _Unmodulated()


def _modulation(enabled: bool, channels: int, kernel_size: int) -> nn.Module:
    return AdaFM(channels, kernel_size) if enabled else _Unmodulated()


class ResidualBlock(nn.Module):
    """conv -> norm -> AdaFM -> ReLU -> conv -> norm -> AdaFM, plus the identity (spec 4.4)."""

    def __init__(self, channels: int, adafm: bool, kernel_size: int, norm: str, n_levels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = _norm(norm, channels, n_levels)
        self.adafm1 = _modulation(adafm, channels, kernel_size)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = _norm(norm, channels, n_levels)
        self.adafm2 = _modulation(adafm, channels, kernel_size)

    def forward(self, x: torch.Tensor, strength: float | torch.Tensor = 1.0) -> torch.Tensor:
        out = self.relu(self.adafm1(self.norm1(self.conv1(x), strength), strength))
        return x + self.adafm2(self.norm2(self.conv2(out), strength), strength)


class AdaFMNet(nn.Module):
    """N_bas with optional AdaFM layers. Output size equals input size; SR models upsample their input
    with MATLAB bicubic first (the paper follows SRCNN), so they take the LR image like any SR model."""

    def __init__(
        self,
        channels: int = 3,
        features: int = 64,
        blocks: int = 16,
        adafm: bool = True,
        kernel_size: int = 1,
        placement: str = "resblocks",
        norm: str = "none",
        n_levels: int = 2,
        scale: int = 1,
        global_skip: bool = False,
        end_scale: int | None = None,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.scale, self.global_skip = scale, global_skip
        self.end_scale = scale if end_scale is None or not adafm else end_scale  # the SR slider's adapted scale
        self.conv_first = nn.Conv2d(channels, features, 3, stride=2, padding=1)
        self.body = nn.ModuleList(
            ResidualBlock(features, adafm, kernel_size, norm, n_levels) for _ in range(blocks)
        )
        self.lr_conv = nn.Conv2d(features, features, 3, padding=1)
        self.lr_norm = _norm(norm, features, n_levels)
        self.lr_adafm = _modulation(adafm and placement == "all", features, kernel_size)
        self.upsample = nn.Sequential(nn.Conv2d(features, features * 4, 3, padding=1), nn.PixelShuffle(2),
                                      nn.ReLU(inplace=True))
        self.hr_conv0 = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True))
        self.hr_conv1 = nn.Conv2d(features, channels, 3, padding=1)
        self._init_weights()

    def _init_weights(self) -> None:
        """Kaiming-normal (fan_in) x 0.1 with zero biases, as the reference code ([C] in spec 4.3)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and not (module.groups > 1 and module.groups == module.in_channels):
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
                module.weight.data *= 0.1
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, strength: float | torch.Tensor = 1.0, scale: float | None = None
                ) -> torch.Tensor:
        """strength: lambda in [0, 1] (a float, or a 0-d/[1] tensor so that ONNX takes it as an input).
        scale: an SR slider's upscaling factor, any value between its start and end scale (fractional too);
        default: the start scale at strength 0, else the end scale -- the two levels it was trained at (a model
        without AdaFM layers, e.g. the slider's basic stage, has only its start scale)."""
        if scale is None:
            scale = self.scale if isinstance(strength, (int, float)) and strength == 0 else self.end_scale
        if scale != 1:
            x = ops.imresize(x, scale)
        height, width = x.shape[-2:]
        x = F.pad(x, (0, width % 2, 0, height % 2), mode="replicate")  # the stride-2 entry conv needs even sides
        return self._restore(x, strength)[..., :height, :width]

    def _restore(self, x: torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
        features = self.conv_first(x)
        body = features
        for block in self.body:
            body = block(body, strength)
        body = self.lr_adafm(self.lr_norm(self.lr_conv(body), strength), strength)
        out = self.hr_conv1(self.hr_conv0(self.upsample(features + body)))
        return x + out if self.global_skip else out

    def adafm_parameters(self) -> Iterable[nn.Parameter]:
        """The only parameters trained in the adaptation stage (the base stays frozen)."""
        for module in self.modules():
            if isinstance(module, AdaFM):
                yield from module.parameters()


def receptive_radius(blocks: int, kernel_size: int, n_adafm: int, scale: int) -> int:
    """Pixels of input context each output pixel sees on one side (tiling overlap must cover it).

    Full resolution: stride-2 entry conv 1 px; every 3x3 conv at half resolution 2 px (2 per block, the
    closing conv, the upsampling conv); each AdaFM filter (k // 2) * 2 px; two 3x3 convs after the
    pixel shuffle 1 px each. SR models see through the bicubic upsampling: radius / scale + 2 taps.
    """
    half_res_convs = 2 * blocks + 2
    radius = 1 + 2 * half_res_convs + 2 * (kernel_size // 2) * n_adafm + 2
    return radius if scale <= 1 else -(-radius // scale) + 2


def count_weights(module: nn.Module, *, include_bias: bool = False) -> int:
    """Weights as the paper counts them: conv/linear kernels, biases excluded by default."""
    return sum(p.numel() for name, p in module.named_parameters() if include_bias or not name.endswith("bias"))


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """AdaBN: replace every BatchNorm's running statistics by those of `batches` (the target level)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    for batch in batches:
        model(batch)
    for m, (momentum, training) in zip(norms, saved):
        m.momentum = momentum
        m.train(training)
    return model


def _describe(arguments: dict) -> dict:
    """Per-instance fields: scale, channels, receptive field, and whether the slider exists."""
    a = {**_DEFAULTS, **arguments}
    n_adafm = (2 * a["blocks"] + (a["placement"] == "all")) if a["adafm"] else 0
    modulated = bool(a["adafm"]) or a["norm"] == "cin"
    ends = sorted({a["scale"], a["end_scale"] or a["scale"]})
    slider = bool(a["adafm"]) and len(ends) == 2  # an SR slider: any scale between its two ends
    return {
        "tasks": ("sr",) if a["scale"] > 1 else ("restore",),
        "scales": tuple(ends) if slider else (a["scale"],), "in_channels": a["channels"],
        "scale_range": (float(ends[0]), float(ends[1])) if slider else None,
        "receptive_field": receptive_radius(a["blocks"], a["kernel_size"], n_adafm, a["scale"]),
        "inputs": (("strength",) if modulated else ()) + (("scale",) if slider else ()),
        # Conditional IN fails bf16 in the contract tests (6.7/255 max abs, 45.5 dB vs fp32: instance norm keeps
        # every layer at unit scale, so rounding errors grow); the other variants pass fp16 and bf16, except SR in
        # bf16: the bicubic pre-upsampling alone is 1.9-2.4/255 off at x3/x4 (see `bicubic`), and the zoo SR
        # slider measured 2.06/255 at x4 (tests/test_half.py), past the 2/255 bar.
        "fp16": a["norm"] != "cin", "bf16": a["norm"] != "cin" and a["scale"] == 1,
        # Instance norm uses whole-image statistics: a tile's output differs (74/255 in the contract test).
        "tiling": "whole" if a["norm"] == "cin" else "tile",
    }


# The reference code's AdaResNet (hejingwenhejingwen/AdaFM; the released `noise15to75.pth`): `model.0` entry conv,
# `model.1.sub.{i}.res.{0,1,3,4}` residual blocks (conv, AdaFM `transformer`, ReLU, conv, AdaFM), `model.1.sub.{B}`
# the conv closing the long skip and `model.1.sub.{B+1}.transformer` its AdaFM (our placement "all"), `model.2`
# the pixel-shuffle conv, `model.5` / `model.7` the HR convs. Its AdaFM is x + transformer(x) with lambda scaling
# the transformer's weight and bias: exactly our residual form, so `transformer` is our `delta` as it is.
_RELEASED_BLOCK = {"res.0": "conv1", "res.1.transformer": "adafm1.delta", "res.3": "conv2",
                   "res.4.transformer": "adafm2.delta"}


def _released_blocks(state: dict[str, torch.Tensor]) -> int:
    return sum(1 for k in state if k.startswith("model.1.sub.") and k.endswith(".res.0.weight"))


def _detect_released(state: dict[str, torch.Tensor]) -> dict | None:
    blocks = _released_blocks(state)
    if not blocks or "model.0.weight" not in state or f"model.1.sub.{blocks}.weight" not in state:
        return None
    first, modulated = state["model.0.weight"], "model.1.sub.0.res.1.transformer.weight" in state
    return {"channels": first.shape[1], "features": first.shape[0], "blocks": blocks, "adafm": modulated,
            "kernel_size": state["model.1.sub.0.res.1.transformer.weight"].shape[-1] if modulated else 1,
            "placement": "all" if f"model.1.sub.{blocks + 1}.transformer.weight" in state else "resblocks",
            "norm": "none", "n_levels": 2}


def convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference code's key layout -> ours (our own state dicts pass unchanged)."""
    blocks = _released_blocks(state)
    if not blocks:
        return state
    names = {"model.0": "conv_first", f"model.1.sub.{blocks}": "lr_conv",
             f"model.1.sub.{blocks + 1}.transformer": "lr_adafm.delta", "model.2": "upsample.0",
             "model.5": "hr_conv0.0", "model.7": "hr_conv1"}
    names.update({f"model.1.sub.{i}.{theirs}": f"body.{i}.{ours}"
                  for i in range(blocks) for theirs, ours in _RELEASED_BLOCK.items()})
    out = {}
    for key, value in state.items():
        prefix, kind = key.rsplit(".", 1)
        if prefix not in names:
            raise ValueError(f"unexpected tensor {key!r} in a reference-layout AdaFM-Net file")
        out[f"{names[prefix]}.{kind}"] = value
    return out


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    """Builder arguments from one of our AdaFM-Net state dicts (`conv_first`, `body.N.conv1`, ...) or the
    reference code's (`model.1.sub.N.res.0`, the released AdaFM weights), else None."""
    released = _detect_released(state)
    if released is not None:
        return released
    needed = ("conv_first.weight", "body.0.conv1.weight", "lr_conv.weight", "hr_conv1.weight")
    if not all(k in state for k in needed):
        return None
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    first = state["conv_first.weight"]
    adafm = "body.0.adafm1.delta.weight" in state
    cin = "body.0.norm1.gamma" in state
    bn = "body.0.norm1.running_mean" in state
    return {
        "channels": first.shape[1], "features": first.shape[0], "blocks": blocks, "adafm": adafm,
        "kernel_size": state["body.0.adafm1.delta.weight"].shape[-1] if adafm else 1,
        "placement": "all" if "lr_adafm.delta.weight" in state else "resblocks",
        "norm": "cin" if cin else "bn" if bn else "none",
        "n_levels": state["body.0.norm1.gamma"].shape[0] if cin else 2,
    }


_DEFAULTS = {"channels": 3, "features": 64, "blocks": 16, "adafm": True, "kernel_size": 1, "placement": "resblocks",
             "norm": "none", "n_levels": 2, "scale": 1, "global_skip": False, "end_scale": None}


@register_model(
    "adafm_net", tasks=("restore",), summary="AdaFM-Net (He et al. 2019): residual net with a strength slider",
    size_multiple=2, resolve=_describe, detect=detect, convert=convert,
    test_configs=({"features": 8, "blocks": 2}, {"features": 8, "blocks": 1, "kernel_size": 3, "placement": "all"},
                  {"features": 8, "blocks": 1, "adafm": False, "norm": "bn"},
                  {"features": 8, "blocks": 1, "norm": "cin"}, {"features": 8, "blocks": 1, "scale": 2},
                  {"features": 8, "blocks": 1, "channels": 1, "global_skip": True},
                  {"features": 8, "blocks": 1, "kernel_size": 5, "scale": 3, "end_scale": 4}),
)
def adafm_net(
    channels: int = 3,
    features: int = 64,
    blocks: int = 16,
    adafm: bool = True,
    kernel_size: int = 1,
    placement: str = "resblocks",
    norm: str = "none",
    n_levels: int = 2,
    scale: int = 1,
    global_skip: bool = False,
    end_scale: int | None = None,
) -> AdaFMNet:
    """AdaFM-Net; `adafm=False` is the basic model N_bas.

    global_skip: add the (upsampled) input to the output, i.e. learn the residual. NOT in the paper or its
    code (spec 4.3: no global skip); an option for small training budgets, where the faithful body cannot
    yet reproduce mild inputs (our CPU DeJPEG model at q80: 32.4 dB out of a 36.9 dB input without it).
    end_scale: the SR slider (spec 4.4, Table 4: basic model at `scale`, AdaFM layers adapted to `end_scale`,
    e.g. x3 -> x4 with 5x5 filters): the model then serves any scale between the two, fractional too, its input
    bicubic-upscaled by the requested scale and lambda(scale) from its card.
    """
    return AdaFMNet(channels, features, blocks, adafm, kernel_size, placement, norm, n_levels, scale, global_skip,
                    end_scale)
