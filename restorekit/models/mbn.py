"""MBN / R-MBN (the multi-branch network for an unknown degradation factor; spec methods-dlnet-rednet-mbn-adafm.md
section 3, field-conventions 3.5): one network with an input branch I_f and an output branch O_f per factor f
around a shared stem S of five DuRB-M blocks. `model(image, factor="rain")` runs the path I_f -> S -> O_f
(MBN: the user names the factor); `model(image)` runs every path in the recurrent order J -> H -> B -> R,
clamping to [0, 1] between steps (R-MBN: no factor needed), which is what `--task auto` serves.

Factors are named by the degradation engine's operators (`rain`, `blur` (motion), `jpeg`, `haze`), so a
training level `rain:...` is the rain path's batch. The pieces, pinned where the paper is ambiguous:

* DuRB-M (Sec. 3.2): an improved SE-ResNet base (conv-ReLU-conv, both bias-free, channel attention from the
  global average AND the total variation mean|dy|^beta + mean|dx|^beta with beta = 3, FC 2C -> 64 -> C, + input,
  ReLU), T1 = 1x1 conv + pixel shuffle up, then a k1 x k1 dilated conv, + res, ReLU (the new res); T2 = a
  stride-2 3x3 conv in parallel with a plain SE-ResNet (SE hidden 96) then a stride-2 k2 x k2 conv, each with a
  ReLU, concatenated, a 3x3 fusing conv, + block input, ReLU. Reflect padding in the ordinary convs, zero
  padding inside the SE-ResNets. Parameter counts match Table 8 exactly (tests/test_mbn.py).
* The hierarchy (Sec. 3.3): M6 -> M7 -> M8 after the stem; rain taps after S, blur after M6, JPEG after M7,
  haze after M8 (R -> B -> J -> H). `hierarchy=False` taps every factor after S (the minimal design).
* `branches="improved"`: rain I1 = a ConvLSTM (PReNet-style: conv 6 -> 32 on [input, current estimate], gates
  on [features, h]) then conv 32 -> 64 (res, full size), pixel unshuffle, conv 256 -> 96 (x, 1/2), the whole
  rain path iterated `rain_iterations` = 4 times carrying the LSTM state; g1 = 1x1 conv + shuffle to 48, conv
  48 -> 48, conv 48 -> 3. Blur and JPEG: three scales coarse to fine (the image halved twice by bicubic
  without antialias, cv2's INTER_CUBIC), each scale's input concatenated with the coarser output upsampled by
  bicubic x2, scale-specific first convs and shared middle convs in I2/I3 and g2/g3 (their scale-specific
  output convs are our reading of "symmetric to the input branch"; 0.48M either way); only the finest output
  is returned (whether the coarser ones get a loss is not stated). Haze: the 3-conv branch (32/64/96, strides
  1/2/2) and the minimal g. `branches="minimal"`: the 3-conv input branch and the minimal g for every factor
  (Table 8's minimal design; `shared_input=True`: one input branch for all, the Table 1 ablation).
* Every output branch ends in tanh and adds its input image (residual prediction).
* Ablations (Table 1): `attention` "tv+gap" (MBN) / "tv" / "gap" (standard SE) / "none"; `second_op`
  "fusion" (DuRB-M) / "conv" (DuRB-U's T2, our default reading of "fusion off") / "se" (DuRB-US's).
* `factors` keeps a subset of the paths: `factors=("rain",)` is the dedicated rain network with the same stem
  (the baseline of Sec. 5.2); a one-factor model takes no factor.
* Widths: `features` (x stream, 96) and `res_features` (res stream, 64) set every other width as in the paper
  (32 = res/2, 48 = features/2, SE hidden 64 = res and 96 = features); smaller values are the CPU recipes.
* Initialisation (`init`): not stated; "pytorch" (default) keeps PyTorch's defaults, as the reference code ([C]).
  At 48/32 channels they shrink the signal over a path's ~30 convs: the blur/JPEG paths pass their stem a gradient
  of ~1e-6, so Adam barely moves the stem at a CPU budget -- our first joint run (1,800 steps) learned only haze and
  left the rain, blur and JPEG paths within 2e-3 of their inputs (JPEG's val PSNR flat to 1e-6 dB over 900 steps). "kaiming" (the CPU and GPU recipes) is He normal for every conv with the convs that end a residual
  or output branch scaled by 0.1 (BasicSR's `default_init_weights(scale=0.1)`): every path starts within ~0.1 of
  the identity with a stem gradient of 1e-3..1e-2 (tests/test_mbn.py). `identity_init=True` also zeroes the last
  conv of every output branch (every path starts exactly as the identity).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ModelError
from restorekit.models import register_model
from restorekit.models._weight_init import apply_init

FACTORS = ("rain", "blur", "jpeg", "haze")  # the hierarchy's tap order R -> B -> J -> H (Sec. 3.3)
RECURRENT_ORDER = ("jpeg", "haze", "blur", "rain")  # R-MBN's processing order J -> H -> B -> R (Table 2)
STEM_BLOCKS = ((3, 3, 2), (5, 3, 1), (3, 5, 2), (5, 5, 1), (7, 5, 1))  # (k1, k2, dilation) of M1..M5
HIERARCHY_BLOCKS = ((7, 5, 2), (11, 5, 1), (11, 5, 1))  # M6, M7, M8
ATTENTIONS = ("tv+gap", "tv", "gap", "none")
SECOND_OPS = ("fusion", "conv", "se")
BRANCHES = ("improved", "minimal")
MULTISCALE = ("blur", "jpeg")  # the improved design's three-scale paths


class ReflectConv2d(nn.Conv2d):
    """A conv with reflect padding, replicate where the map is not larger than the pad (the coarse scales of a
    small image, which reflect cannot pad); the weights are a plain Conv2d's."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, bias: bool = True):
        super().__init__(cin, cout, kernel, stride, 0, dilation, bias=bias)
        self.pad = dilation * (kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if min(x.shape[-2:]) > self.pad else "replicate"
        return super().forward(F.pad(x, (self.pad,) * 4, mode=mode) if self.pad else x)


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, bias: bool = True,
         reflect: bool = True) -> nn.Conv2d:
    """A 'same' conv (at stride 1; half size at stride 2); reflect padding is the ordinary convs' (DuRN), zero
    padding the SE-ResNets'."""
    if reflect:
        return ReflectConv2d(cin, cout, kernel, stride, dilation, bias)
    return nn.Conv2d(cin, cout, kernel, stride, dilation * (kernel // 2), dilation, bias=bias)


def up_conv(features: int) -> nn.Sequential:
    """x2 up-sampling with a built-in 1x1 conv (C -> 4C, pixel shuffle), no ReLU."""
    return nn.Sequential(nn.Conv2d(features, 4 * features, 1), nn.PixelShuffle(2))


def total_variation(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Per channel mean |vertical difference|^beta + mean |horizontal difference|^beta, shape (B, C)."""
    vertical = (x[..., 1:, :] - x[..., :-1, :]).abs().pow(beta).mean(dim=(-2, -1))
    horizontal = (x[..., :, 1:] - x[..., :, :-1]).abs().pow(beta).mean(dim=(-2, -1))
    return vertical + horizontal


class ChannelAttention(nn.Module):
    """SE channel scaling fed with the global average ('gap', the standard SE), the total variation ('tv') or
    both concatenated ('tv+gap', MBN's improved attention); 'none' is the identity."""

    def __init__(self, channels: int, hidden: int, statistics: str = "tv+gap", beta: float = 3.0) -> None:
        super().__init__()
        if statistics not in ATTENTIONS:
            raise ValueError(f"attention is one of {', '.join(ATTENTIONS)}, not {statistics!r}")
        self.statistics, self.beta = statistics, beta
        inputs = {"tv+gap": 2 * channels, "tv": channels, "gap": channels, "none": 0}[statistics]
        self.fc = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels),
                                nn.Sigmoid()) if inputs else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc is None:
            return x
        parts = []
        if "tv" in self.statistics:
            parts.append(total_variation(x, self.beta))
        if "gap" in self.statistics:
            parts.append(x.mean(dim=(-2, -1)))
        return x * self.fc(torch.cat(parts, dim=1))[..., None, None]


class SEResNet(nn.Module):
    """conv3x3 - ReLU - conv3x3 (bias-free, zero padding) - channel attention - + input - ReLU."""

    def __init__(self, channels: int, hidden: int, statistics: str = "gap", beta: float = 3.0) -> None:
        super().__init__()
        self.conv1 = conv(channels, channels, bias=False, reflect=False)
        self.conv2 = conv(channels, channels, bias=False, reflect=False)
        self.attention = ChannelAttention(channels, hidden, statistics, beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.attention(self.conv2(F.relu(self.conv1(x)))) + x)

    def residual_ends(self) -> list[nn.Conv2d]:
        return [self.conv2]


class DuRBM(nn.Module):
    """The dual residual block of MBN: `(x, res) -> (x, res)`, x at s and res at 2s (see the module text)."""

    def __init__(self, features: int, res_features: int, k1: int, k2: int, dilation: int,
                 attention: str = "tv+gap", second_op: str = "fusion", beta: float = 3.0) -> None:
        super().__init__()
        if second_op not in SECOND_OPS:
            raise ValueError(f"second_op is one of {', '.join(SECOND_OPS)}, not {second_op!r}")
        self.second_op = second_op
        self.base = SEResNet(features, res_features, attention, beta)
        self.up = up_conv(features)
        self.t1 = conv(features, res_features, k1, dilation=dilation)
        if second_op in ("fusion", "conv"):
            self.down_conv = conv(res_features, features, 3, stride=2)
        if second_op in ("fusion", "se"):
            self.se = SEResNet(res_features, features, "gap", beta)
            self.down_se = conv(res_features, features, k2, stride=2)
        if second_op == "fusion":
            self.fuse = conv(2 * features, features, 3)

    def forward(self, x: torch.Tensor, res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        res = F.relu(self.t1(self.up(self.base(x))) + res)
        if self.second_op == "conv":
            out = self.down_conv(res)
        elif self.second_op == "se":
            out = self.down_se(self.se(res))
        else:
            out = self.fuse(torch.cat([F.relu(self.down_conv(res)), F.relu(self.down_se(self.se(res)))], dim=1))
        return F.relu(out + x), res

    def residual_ends(self) -> list[nn.Conv2d]:
        """The convs whose outputs are added to a skip (T1 onto res; T2's last conv onto x)."""
        last = {"fusion": "fuse", "conv": "down_conv", "se": "down_se"}[self.second_op]
        return [self.t1, getattr(self, last)]


class PlainInput(nn.Module):
    """The 3-conv input branch (strides 1, 2, 2): res = the stride-2 map (1/2), x = the last (1/4)."""

    def __init__(self, features: int, res_features: int, in_channels: int = 3) -> None:
        super().__init__()
        self.convs = nn.ModuleList([conv(in_channels, res_features // 2), conv(res_features // 2, res_features, stride=2),
                                    conv(res_features, features, stride=2)])

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = F.relu(self.convs[0](image))
        res = F.relu(self.convs[1](first))
        return F.relu(self.convs[2](res)), res


class MinimalOutput(nn.Module):
    """g_i of the minimal design (0.13M at 96/64): [1x1 up + conv + ReLU] x 2, conv to 3, tanh (x at 1/4)."""

    def __init__(self, features: int, res_features: int) -> None:
        super().__init__()
        half = res_features // 2
        self.body = nn.Sequential(up_conv(features), conv(features, res_features), nn.ReLU(inplace=True),
                                  up_conv(res_features), conv(res_features, half), nn.ReLU(inplace=True),
                                  conv(half, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(x))

    def last_convs(self) -> list[nn.Conv2d]:
        return [self.body[-1]]


class RainInput(nn.Module):
    """I1: the ConvLSTM step on [image, current estimate], then res (full size) and x (1/2)."""

    def __init__(self, features: int, res_features: int) -> None:
        super().__init__()
        hidden = res_features // 2
        self.entry = conv(6, hidden)
        self.gates = conv(2 * hidden, 4 * hidden)  # input, forget, cell and output gates, one conv each
        self.to_res = conv(hidden, res_features)
        self.to_x = conv(4 * res_features, features)

    def forward(self, image: torch.Tensor, estimate: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        entry = F.relu(self.entry(torch.cat([image, estimate], dim=1)))
        h, c = state if state is not None else (torch.zeros_like(entry), torch.zeros_like(entry))
        i, f, g, o = self.gates(torch.cat([entry, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        res = F.relu(self.to_res(h))
        return F.relu(self.to_x(F.pixel_unshuffle(res, 2))), res, (h, c)


class RainOutput(nn.Module):
    """g1: 1x1 up to features/2 channels, conv + ReLU, conv to 3, tanh (x at 1/2)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        half = features // 2
        self.body = nn.Sequential(nn.Conv2d(features, 4 * half, 1), nn.PixelShuffle(2), conv(half, half),
                                  nn.ReLU(inplace=True), conv(half, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(x))

    def last_convs(self) -> list[nn.Conv2d]:
        return [self.body[-1]]


class MultiScaleInput(nn.Module):
    """I2 / I3: per scale (coarse, middle, fine) a first conv, two shared convs, unshuffle, a scale conv, two
    shared convs (-> res at 1/2), unshuffle, a scale conv (-> x at 1/4); 13 convs, every one with a ReLU."""

    def __init__(self, features: int, res_features: int) -> None:
        super().__init__()
        q, r = res_features // 2, res_features
        self.first = nn.ModuleList([conv(3 if s == 0 else 6, q) for s in range(3)])
        self.shared1 = nn.ModuleList([conv(q, q), conv(q, q)])
        self.second = nn.ModuleList([conv(4 * q, r) for _ in range(3)])
        self.shared2 = nn.ModuleList([conv(r, r), conv(r, r)])
        self.third = nn.ModuleList([conv(4 * r, features) for _ in range(3)])

    def forward(self, image: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.relu(self.first[scale](image))
        for layer in self.shared1:
            y = F.relu(layer(y))
        y = F.relu(self.second[scale](F.pixel_unshuffle(y, 2)))
        for layer in self.shared2:
            y = F.relu(layer(y))
        return F.relu(self.third[scale](F.pixel_unshuffle(y, 2))), y


class MultiScaleOutput(nn.Module):
    """g2 / g3, the input branch mirrored: per scale an up-sampling (1x1 conv + shuffle) and a conv, two shared
    convs, the same again at the next width, a per-scale output conv, tanh."""

    def __init__(self, features: int, res_features: int) -> None:
        super().__init__()
        q, r = res_features // 2, res_features
        self.up1 = nn.ModuleList([up_conv(features) for _ in range(3)])
        self.first = nn.ModuleList([conv(features, r) for _ in range(3)])
        self.shared1 = nn.ModuleList([conv(r, r), conv(r, r)])
        self.up2 = nn.ModuleList([up_conv(r) for _ in range(3)])
        self.second = nn.ModuleList([conv(r, q) for _ in range(3)])
        self.shared2 = nn.ModuleList([conv(q, q), conv(q, q)])
        self.last = nn.ModuleList([conv(q, 3) for _ in range(3)])

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        y = F.relu(self.first[scale](self.up1[scale](x)))
        for layer in self.shared1:
            y = F.relu(layer(y))
        y = F.relu(self.second[scale](self.up2[scale](y)))
        for layer in self.shared2:
            y = F.relu(layer(y))
        return torch.tanh(self.last[scale](y))

    def last_convs(self) -> list[nn.Conv2d]:
        return list(self.last)


def branch_ends(model: nn.Module) -> list[nn.Conv2d]:
    """The convs that end a residual branch or an output branch: scaled at init by models/_weight_init.py
    ("kaiming") so that every path starts near the identity with the gradient reaching its stem and input
    branch (PyTorch's default shrinks a path's ~30 convs to a stem gradient of ~1e-6 at 48/32 channels)."""
    return [end for layer in model.modules()
            for end in (layer.residual_ends() if isinstance(layer, (DuRBM, SEResNet)) else
                        layer.last_convs() if isinstance(layer, (MinimalOutput, RainOutput, MultiScaleOutput)) else [])]


def half_size(image: torch.Tensor) -> torch.Tensor:
    """The next coarser scale: bicubic halving without antialias (the reference code's cv2 INTER_CUBIC)."""
    return F.interpolate(image, scale_factor=0.5, mode="bicubic", align_corners=False)


def double_size(image: torch.Tensor) -> torch.Tensor:
    return F.interpolate(image, scale_factor=2, mode="bicubic", align_corners=False)


def size_multiple(factors: Sequence[str], improved: bool) -> int:
    """What inputs are padded to: x is at 1/4 of the input (1/16 on the coarse scale of the improved blur and
    JPEG branches, 1/2 for rain)."""
    return 16 if improved and set(factors) & set(MULTISCALE) else 4


class MBN(nn.Module):
    def __init__(self, factors: Sequence[str] = FACTORS, features: int = 96, res_features: int = 64,
                 branches: str = "improved", shared_input: bool = False, hierarchy: bool = True,
                 attention: str = "tv+gap", second_op: str = "fusion", beta: float = 3.0,
                 rain_iterations: int = 4, identity_init: bool = False, init: str = "pytorch") -> None:
        super().__init__()
        unknown = [f for f in factors if f not in FACTORS]
        if unknown or not factors or len(set(factors)) != len(factors):
            raise ValueError(f"factors: a subset of {', '.join(FACTORS)} without repeats, got {list(factors)}")
        if branches not in BRANCHES:
            raise ValueError(f"branches is one of {', '.join(BRANCHES)}, not {branches!r}")
        if shared_input and branches != "minimal":
            raise ValueError("shared_input (one input branch for every factor) is a minimal-design ablation")
        self.factors = tuple(f for f in FACTORS if f in factors)  # kept in the hierarchy's order
        self.improved, self.shared_input, self.rain_iterations = branches == "improved", shared_input, rain_iterations
        block = dict(attention=attention, second_op=second_op, beta=beta)
        self.stem = nn.ModuleList([DuRBM(features, res_features, *kd, **block) for kd in STEM_BLOCKS])
        # the blocks each factor's tap needs: none for rain, M6 for blur, M6-M7 for JPEG, M6-M8 for haze
        self.taps = {f: (FACTORS.index(f) if hierarchy else 0) for f in self.factors}
        depth = max(self.taps.values())
        self.hierarchy = nn.ModuleList([DuRBM(features, res_features, *kd, **block) for kd in HIERARCHY_BLOCKS[:depth]])
        self.inputs = nn.ModuleDict()
        self.outputs = nn.ModuleDict()
        for f in self.factors:
            kind = self.branch_kind(f)
            if kind == "rain":
                self.inputs[f], self.outputs[f] = RainInput(features, res_features), RainOutput(features)
            elif kind == "multiscale":
                self.inputs[f] = MultiScaleInput(features, res_features)
                self.outputs[f] = MultiScaleOutput(features, res_features)
            else:
                if not shared_input:
                    self.inputs[f] = PlainInput(features, res_features)
                self.outputs[f] = MinimalOutput(features, res_features)
        if shared_input:
            self.inputs["shared"] = PlainInput(features, res_features)
        apply_init(self, init, branch_ends(self))
        if identity_init:  # every path starts as the identity: tanh(0) + input
            for head in self.outputs.values():
                for last in head.last_convs():
                    nn.init.zeros_(last.weight)
                    nn.init.zeros_(last.bias)

    def branch_kind(self, factor: str) -> str:
        if not self.improved:
            return "plain"
        return "rain" if factor == "rain" else "multiscale" if factor in MULTISCALE else "plain"

    def trunk(self, x: torch.Tensor, res: torch.Tensor, factor: str) -> torch.Tensor:
        """The stem, then the hierarchy's blocks up to the factor's tap."""
        for block in self.stem:
            x, res = block(x, res)
        for block in self.hierarchy[:self.taps[factor]]:
            x, res = block(x, res)
        return x

    def path(self, image: torch.Tensor, factor: str) -> torch.Tensor:
        """P_f = O_f o S o I_f: the restored image for a known factor."""
        if factor not in self.factors:
            raise ModelError(f"this MBN has paths for {', '.join(self.factors)}, not {factor!r}")
        kind = self.branch_kind(factor)
        if kind == "rain":
            return self.rain_path(image)
        if kind == "multiscale":
            return self.multiscale_path(image, factor)
        x, res = self.inputs["shared" if self.shared_input else factor](image)
        return self.outputs[factor](self.trunk(x, res, factor)) + image

    def rain_path(self, image: torch.Tensor) -> torch.Tensor:
        estimate, state = image, None
        for _ in range(self.rain_iterations):
            x, res, state = self.inputs["rain"](image, estimate, state)
            estimate = self.outputs["rain"](self.trunk(x, res, "rain")) + image
        return estimate

    def multiscale_path(self, image: torch.Tensor, factor: str) -> torch.Tensor:
        half = half_size(image)
        pyramid = (half_size(half), half, image)
        output = None
        for scale, level in enumerate(pyramid):
            given = level if output is None else torch.cat([level, double_size(output)], dim=1)
            x, res = self.inputs[factor](given, scale)
            output = self.outputs[factor](self.trunk(x, res, factor), scale) + level
        return output

    def recurrent(self, image: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """R-MBN: every path in the order J -> H -> B -> R, clamped to [0, 1] between steps; (factor, output)
        after each step (the step-2 loss weighs the factor's own step and the last)."""
        steps = []
        for factor in (f for f in RECURRENT_ORDER if f in self.factors):
            image = self.path(image, factor).clamp(0, 1)
            steps.append((factor, image))
        return steps

    def forward(self, image: torch.Tensor, factor: str | None = None) -> torch.Tensor:
        """The factor's path (MBN), or every path recurrently (R-MBN); any size (replicate-padded bottom-right
        to `size_multiple`, cropped back)."""
        height, width = image.shape[-2:]
        multiple = size_multiple(self.factors, self.improved)
        image = F.pad(image, (0, -width % multiple, 0, -height % multiple), mode="replicate")
        if factor is None and len(self.factors) == 1:  # a dedicated network: its one path, no recurrence
            factor = self.factors[0]
        out = self.recurrent(image)[-1][1] if factor is None else self.path(image, factor)
        return out[..., :height, :width]


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    """Our layout (`stem.{0..4}`, `inputs.<factor>`, `outputs.<factor>`): factors, widths and design from the
    tensors; ablation switches that leave no trace in shapes (attention statistics are visible; the
    iteration count is not) come from the model card."""
    if "stem.4.t1.weight" not in state or not any(k.startswith("outputs.") for k in state):
        return None
    factors = tuple(f for f in FACTORS if any(k.startswith(f"outputs.{f}.") for k in state))
    features, res_features = int(state["stem.0.t1.weight"].shape[1]), int(state["stem.0.t1.weight"].shape[0])
    improved = any(k.startswith("inputs.rain.gates") or k.startswith(f"inputs.{f}.first") for k in state
                   for f in MULTISCALE)
    arguments: dict = {"factors": factors, "features": features, "res_features": res_features}
    if not improved and set(factors) - {"haze"}:  # haze's branches are the same in both designs
        arguments["branches"] = "minimal"
        arguments["shared_input"] = any(k.startswith("inputs.shared.") for k in state)
    depth = len({k.split(".")[1] for k in state if k.startswith("hierarchy.")})
    if len(factors) > 1 and depth < max(FACTORS.index(f) for f in factors):
        arguments["hierarchy"] = False
    fc = state.get("stem.0.base.attention.fc.0.weight")
    arguments["attention"] = "none" if fc is None else "tv+gap" if fc.shape[1] == 2 * features else "gap"
    if "stem.0.fuse.weight" not in state:
        arguments["second_op"] = "se" if "stem.0.se.conv1.weight" in state else "conv"
    return arguments


def _resolve(arguments: dict) -> dict:
    factors = tuple(f for f in FACTORS if f in arguments.get("factors", FACTORS))
    return {"inputs": ("factor",) if len(factors) > 1 else (), "factors": factors,
            "size_multiple": size_multiple(factors, arguments.get("branches", "improved") == "improved")}


@register_model(
    "mbn", tasks=("derain", "deblur", "jpeg", "dehaze", "restore"), blind=True,
    summary="MBN / R-MBN: one multi-branch network for rain, motion blur, JPEG and haze; "
            "factor given (MBN) or run recurrently J->H->B->R (R-MBN)",
    inputs=("factor",), factors=FACTORS, size_multiple=16, tiling="whole", detect=detect, resolve=_resolve,
    test_configs=({"features": 8, "res_features": 8, "rain_iterations": 2},
                  {"features": 8, "res_features": 4, "branches": "minimal", "shared_input": True, "hierarchy": False,
                   "attention": "gap", "second_op": "conv"},
                  {"factors": ("haze",), "features": 8, "res_features": 8, "attention": "none", "second_op": "se"}),
)
def mbn(factors: Sequence[str] = FACTORS, features: int = 96, res_features: int = 64, branches: str = "improved",
        shared_input: bool = False, hierarchy: bool = True, attention: str = "tv+gap", second_op: str = "fusion",
        beta: float = 3.0, rain_iterations: int = 4, identity_init: bool = False, init: str = "pytorch") -> MBN:
    """The paper's MBN (improved branches, hierarchy R -> B -> J -> H); a one-factor `factors` is a dedicated net."""
    return MBN(factors, features, res_features, branches, shared_input, hierarchy, attention, second_op, beta,
               rain_iterations, identity_init, init)
