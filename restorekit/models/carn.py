"""CARN, CARN-M and progressive CARN (Ahn, Kang, Sohn, "Fast, Accurate, and Lightweight Super-Resolution with
Cascading Residual Network", ECCV 2018; the thesis on efficient image restoration, chapters 2 and 3).

RGB in, RGB out, late up-sampling. An entry conv, a *cascading body* (B cascading blocks of U residual units;
inside a block each unit's output is concatenated to everything before it and fused by a 1x1 conv: local
cascading; the blocks are cascaded the same way: global cascading), pixel-shuffle up-sampling heads with a
ReLU, an exit conv. A frozen RGB mean (DIV2K's) is subtracted at the input and added back at the output.

* `carn`: plain residual units (conv, ReLU, conv, + input, ReLU).
* `carn_m`: the efficient residual unit (group conv, ReLU, group conv, ReLU, 1x1, + input, ReLU; G = 4) and
  recursion: one unit's weights serve all U positions of its block (`shared`); the heads are grouped too.
* One body serves x2/x3/x4 through three heads chosen by the call's `scale` (`model(lr, scale=3)`), or, with
  the builder's `scale=S`, a single-scale model (also x8, the thesis's CARN-B3U3 baseline).
* `progressive_carn`: the x8 model of chapter 3 (not "PCARN", which is the GAN-trained CARN of chapter 2):
  one entry conv, then per stage a B8U4 cascading body and a x2 head, then one toRGB conv. `stages=k` is the
  network of training stage k (output x2^k); its toRGB is the one kept when training stops at that stage.

Two released layouts differ in two places, kept apart by `variant`:
* "thesis" (default; thesis ch. 2 and nmhkahn/PCARN-pytorch, MIT): the 1x1 fusions are linear and the body
  adds its input back (O = H^B + H^0).
* "eccv" (nmhkahn/CARN-pytorch, MIT, which released `carn_m.pth`): a ReLU after every 1x1 fusion and no
  global residual. Here its fusions are `Sequential(conv, ReLU)`, so the key names record the variant
  (`...fusions.0.0.weight`) and a state dict alone says which network it is.

Released weights convert here: CARN-pytorch `checkpoint/carn_m.pth` (`b1.b1.body.0.weight`, `b1.c1.body.0.*`,
`upsample.up4.body.3.*`) and PCARN-pytorch `checkpoints/PCARN-M-L1.pth` / `PCARN-M.pth` (`b1.b1.conv1.*`,
`b1.c1.*`). PCARN-pytorch ties one efficient unit to three attributes, so its files store each block's unit
three times: converted to one parameter set, and refused when the stored copies differ. Their mean-shift
1x1 convs (identity weight, -/+ mean bias) become our `rgb_mean` after checking that they are exactly that.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ModelError
from restorekit.models import register_model

StateDict = dict[str, torch.Tensor]

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)  # reference code's MeanShift; no std division
VARIANTS = ("thesis", "eccv")
HEADS = (2, 3, 4)  # the multi-scale model's up-sampling branches
SINGLE_SCALES = (2, 3, 4, 8)
# thesis Table 2.1's ablation: "none" is its SRResNet-like baseline (963K parameters at x4), "local+global" CARN
CASCADES = ("none", "local", "global", "local+global")


def _conv3(cin: int, cout: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, groups=groups)


class ResidualUnit(nn.Module):
    """CARN's residual block; the ReLU after the addition is the reference code's (the thesis leaves it open)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = _conv3(features, features), _conv3(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place on the fresh conv output: one LR feature map fewer allocated (and page-faulted) per unit
        return F.relu(self.conv2(F.relu(self.conv1(x), inplace=True)) + x)


class EfficientResidualUnit(nn.Module):
    """CARN-M's block: two group convs and a 1x1 that mixes the groups, cost ratio 1/G + 1/(2K^2) (Eq. 2.10)."""

    def __init__(self, features: int, groups: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = _conv3(features, features, groups), _conv3(features, features, groups)
        self.pointwise = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place as in ResidualUnit: bench/sr_speed.py measured the two extra maps per call at +5% CPU time
        return F.relu(self.pointwise(F.relu(self.conv2(F.relu(self.conv1(x), inplace=True)), inplace=True)) + x)


def _fusion(inputs: int, features: int, variant: str) -> nn.Module:
    conv = nn.Conv2d(inputs, features, 1)
    return nn.Sequential(conv, nn.ReLU(inplace=True)) if variant == "eccv" else conv


def _cascade(x: torch.Tensor, steps: list[nn.Module], fusions: nn.ModuleList) -> torch.Tensor:
    """c_u = [c_{u-1}, step_u(o_{u-1})], o_u = fuse_u(c_u): what both reference codes concatenate (the raw
    step outputs; the thesis's equations name the fused ones, same channel counts). No fusions: the steps
    in sequence (the ablation's model without this level of cascading, thesis Table 2.1)."""
    if not fusions:
        for step in steps:
            x = step(x)
        return x
    concatenated = out = x
    for step, fuse in zip(steps, fusions):
        concatenated = torch.cat([concatenated, step(out)], dim=1)
        out = fuse(concatenated)
    return out


class CascadingBlock(nn.Module):
    """U residual units with local cascading; `shared`: one unit used at every position (CARN-M's recursion)."""

    def __init__(self, features: int, units: int, groups: int, efficient: bool, shared: bool, variant: str,
                 local: bool = True) -> None:
        super().__init__()
        self.positions = units

        def unit() -> nn.Module:
            return EfficientResidualUnit(features, groups) if efficient else ResidualUnit(features)

        self.units = nn.ModuleList(unit() for _ in range(1 if shared else units))
        self.fusions = nn.ModuleList(_fusion((u + 2) * features, features, variant) for u in range(units if local else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = [self.units[min(u, len(self.units) - 1)] for u in range(self.positions)]
        return _cascade(x, steps, self.fusions)


class CascadingBody(nn.Module):
    """B cascading blocks with global cascading; the thesis adds the body's input back (O = H^B + H^0).
    `local`/`global_`/`residual` switch the three off one by one: the ablation of thesis Table 2.1."""

    def __init__(self, features: int, blocks: int, units: int, groups: int = 1, efficient: bool = False,
                 shared: bool = False, variant: str = "thesis", local: bool = True, global_: bool = True,
                 residual: bool | None = None) -> None:
        super().__init__()
        self.residual = variant == "thesis" if residual is None else residual
        self.blocks = nn.ModuleList(CascadingBlock(features, units, groups, efficient, shared, variant, local)
                                    for _ in range(blocks))
        self.fusions = nn.ModuleList(_fusion((b + 2) * features, features, variant)
                                     for b in range(blocks if global_ else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _cascade(x, list(self.blocks), self.fusions)
        return out + x if self.residual else out


def upsampler(features: int, scale: int, groups: int = 1) -> nn.Sequential:
    """ESPCN-style with a ReLU: (conv F->4F, ReLU, shuffle 2) per factor 2, or conv F->9F, ReLU, shuffle 3."""
    factors = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
    if scale not in SINGLE_SCALES:
        raise ValueError(f"CARN up-samples by x{'/x'.join(map(str, SINGLE_SCALES))}, not x{scale}")
    layers: list[nn.Module] = []
    for factor in factors:
        layers += [_conv3(features, factor * factor * features, groups), nn.ReLU(inplace=True), nn.PixelShuffle(factor)]
    return nn.Sequential(*layers)


class MeanShift(nn.Module):
    """The frozen RGB mean: a buffer, so no optimiser or EMA ever moves it (the reference freezes a 1x1 conv)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1))


class CARN(MeanShift):
    def __init__(self, features: int = 64, blocks: int = 3, units: int = 3, scale: int | None = None,
                 groups: int = 1, efficient: bool = False, shared: bool = False, variant: str = "thesis",
                 desubpixel: bool = False, cascade: str = "local+global", residual: bool | None = None) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        if desubpixel and scale is None:
            raise ValueError("desubpixel needs a single-scale CARN (scale=2/3/4/8): the input is HR-size")
        # CutBlur's desubpixel entry (thesis 4.3.1 step 5): the HR-size input is pixel-unshuffled by the scale,
        # so the first conv sees s^2 x 3 channels at LR size and nothing after it changes
        self.unshuffle = scale if desubpixel else 1
        self.entry = _conv3(3 * self.unshuffle**2, features)
        if cascade not in CASCADES:
            raise ValueError(f"cascade must be one of {', '.join(CASCADES)}, not {cascade!r}")
        self.body = CascadingBody(features, blocks, units, groups, efficient, shared, variant,
                                  local="local" in cascade, global_="global" in cascade, residual=residual)
        self.heads = nn.ModuleDict({f"x{s}": upsampler(features, s, groups) for s in (HEADS if scale is None else (scale,))})
        self.exit = _conv3(features, 3)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        head = f"x{int(scale)}" if scale is not None else next(iter(self.heads)) if len(self.heads) == 1 else None
        if head not in self.heads:
            raise ModelError(f"this CARN has the {', '.join(self.heads)} head(s), not x{scale}")
        features = self.entry(F.pixel_unshuffle(x - self.rgb_mean, self.unshuffle))
        return self.exit(self.heads[head](self.body(features))) + self.rgb_mean


class ProgressiveStage(nn.Module):
    """One stage of progressive CARN: a cascading body, then a x2 head (no exit conv: toRGB follows)."""

    def __init__(self, features: int, blocks: int, units: int) -> None:
        super().__init__()
        self.body = CascadingBody(features, blocks, units)
        self.upsample = upsampler(features, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.body(x))


class ProgressiveCARN(MeanShift):
    """Thesis ch. 3: x2 per stage. Training adds stage k with a fresh toRGB and drops the previous toRGB, so
    a `stages=k` network's weights are stage k's (its earlier stages load into the `stages=k+1` network)."""

    def __init__(self, stages: int = 3, blocks: int = 8, units: int = 4, features: int = 64) -> None:
        super().__init__()
        self.entry = _conv3(3, features)
        self.stages = nn.ModuleList(ProgressiveStage(features, blocks, units) for _ in range(stages))
        self.to_rgb = _conv3(features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.entry(x - self.rgb_mean)
        for stage in self.stages:
            out = stage(out)
        return self.to_rgb(out) + self.rgb_mean


# ---------------------------------------------------------------------------------------------------
# Released layouts -> ours
# ---------------------------------------------------------------------------------------------------

# CARN-pytorch (ECCV): units `b{i}.b{u}.body.{0,2,4}`, fusions `b{i}.c{u}.body.0`, `c{b}.body.0` (conv + ReLU).
# PCARN-pytorch (thesis): units `b{i}.b{u}.{conv1,conv2,pw}`, fusions `b{i}.c{u}`, `c{b}` (plain convs).
_ECCV_UNIT = {"0": "conv1", "2": "conv2", "4": "pointwise"}
_PCARN_UNIT = {"conv1": "conv1", "conv2": "conv2", "pw": "pointwise"}
_RULES = [  # (pattern, our key from the match and the layout's fusion suffix)
    (r"b(\d+)\.b(\d+)\.body\.(\d)\.(weight|bias)",
     lambda m, fuse: f"body.blocks.{int(m[1]) - 1}.units.{int(m[2]) - 1}.{_ECCV_UNIT.get(m[3], '?')}.{m[4]}"),
    (r"b(\d+)\.b(\d+)\.(conv1|conv2|pw)\.(weight|bias)",
     lambda m, fuse: f"body.blocks.{int(m[1]) - 1}.units.{int(m[2]) - 1}.{_PCARN_UNIT[m[3]]}.{m[4]}"),
    (r"b(\d+)\.c(\d+)\.(?:body\.0\.)?(weight|bias)",
     lambda m, fuse: f"body.blocks.{int(m[1]) - 1}.fusions.{int(m[2]) - 1}{fuse}.{m[3]}"),
    (r"c(\d+)\.(?:body\.0\.)?(weight|bias)", lambda m, fuse: f"body.fusions.{int(m[1]) - 1}{fuse}.{m[2]}"),
    (r"upsample\.up(\d)\.body\.(\d+)\.(weight|bias)", lambda m, fuse: f"heads.x{m[1]}.{m[2]}.{m[3]}"),
    (r"upsample\.up\.body\.(\d+)\.(weight|bias)", lambda m, fuse: f"heads.x.{m[1]}.{m[2]}"),  # scale read later
    (r"(entry|exit)\.(weight|bias)", lambda m, fuse: f"{m[1]}.{m[2]}"),
]
_MEAN_SHIFTS = {"sub_mean.shifter.weight", "sub_mean.shifter.bias", "add_mean.shifter.weight", "add_mean.shifter.bias"}


def _released(state: StateDict) -> str | None:
    """'eccv' (CARN-pytorch keys), 'thesis' (PCARN-pytorch keys) or None (not a released CARN file)."""
    if "entry.weight" not in state or not _MEAN_SHIFTS <= set(state):
        return None
    if "b1.c1.body.0.weight" in state:
        return "eccv"
    return "thesis" if "b1.c1.weight" in state else None


def _rename(key: str, fuse: str) -> str | None:
    for pattern, ours in _RULES:
        match = re.fullmatch(pattern, key)
        if match:
            return ours(match, fuse)
    return None


def _single_head_scale(state: StateDict, features: int) -> int:
    """The scale of a single-scale ECCV head (`upsample.up.body.*`): 9F channels is x3, else 2^(convs)."""
    convs = [k for k in state if re.fullmatch(r"heads\.x\.\d+\.weight", k)]
    if len(convs) == 1 and state[convs[0]].shape[0] == 9 * features:
        return 3
    return 2 ** len(convs)


def _mean_from_shifts(state: StateDict) -> torch.Tensor:
    """The released mean-shift convs as our buffer, refused unless they are identity -/+ one RGB mean."""
    eye = torch.eye(3).view(3, 3, 1, 1)
    sub, add = state["sub_mean.shifter.bias"].float(), state["add_mean.shifter.bias"].float()
    weights = (state["sub_mean.shifter.weight"].float(), state["add_mean.shifter.weight"].float())
    if not (all(torch.equal(w, eye) for w in weights) and torch.equal(sub, -add)):
        raise ModelError("a CARN file whose mean-shift convs are not identity -/+ one RGB mean: "
                         "restorekit only loads the released frozen mean shift")
    return add.view(1, 3, 1, 1)


def _collapse_shared_units(state: StateDict) -> StateDict:
    """PCARN-pytorch's tied unit stored once per use -> one parameter set per block; differing copies refused."""
    out: StateDict = {}
    for key, value in state.items():
        match = re.fullmatch(r"(body\.blocks\.\d+\.units\.)(\d+)(\..+)", key)
        if match is None or match[2] == "0":
            out[key] = value
            continue
        first = state.get(f"{match[1]}0{match[3]}")
        if first is None or first.shape != value.shape or not torch.equal(first, value):
            raise ModelError(f"a PCARN-M file whose shared residual unit differs between its stored copies ({key}): "
                             "CARN-M ties one unit per cascading block, so this file is not CARN-M")
    return out


def convert(state: StateDict) -> StateDict:
    """A released CARN-pytorch / PCARN-pytorch state dict -> our keys (ours unchanged)."""
    variant = _released(state)
    if variant is None:
        return state
    fuse = ".0" if variant == "eccv" else ""
    renamed: StateDict = {"rgb_mean": _mean_from_shifts(state)}
    for key, value in state.items():
        if key in _MEAN_SHIFTS:
            continue
        ours = _rename(key, fuse)
        if ours is None or "?" in ours:
            raise ModelError(f"a CARN file with a tensor restorekit does not know: {key}")
        renamed[ours] = value
    if any(k.startswith("heads.x.") for k in renamed):
        scale = _single_head_scale(renamed, int(state["entry.weight"].shape[0]))
        renamed = {k.replace("heads.x.", f"heads.x{scale}.", 1): v for k, v in renamed.items()}
    if variant == "thesis" and "body.blocks.0.units.0.pointwise.weight" in renamed:
        renamed = _collapse_shared_units(renamed)
    return renamed


def _count(state: StateDict, pattern: str) -> int:
    return sum(1 for k in state if re.fullmatch(pattern, k))


def _read(state: StateDict) -> dict | None:
    """Builder arguments from our layout: the variant from the fusion keys, the scale from the heads."""
    if "entry.weight" not in state or "exit.weight" not in state or "body.blocks.0.units.0.conv1.weight" not in state:
        return None
    features = int(state["entry.weight"].shape[0])
    variant = "eccv" if any(re.fullmatch(r"body\.(blocks\.\d+\.)?fusions\.\d+\.0\.weight", k) for k in state) \
        else "thesis"
    stored = len({k.split(".")[4] for k in state if k.startswith("body.blocks.0.units.")})
    blocks = len({k.split(".")[2] for k in state if k.startswith("body.blocks.")})
    units = _count(state, r"body\.blocks\.0\.fusions\.\d+(\.0)?\.weight") or stored  # no local fusions: unshared
    local = any(k.startswith("body.blocks.0.fusions.") for k in state)
    global_ = any(k.startswith("body.fusions.") for k in state)
    heads = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"heads\.x(\d+)\.0\.weight", k)))
    unit = state["body.blocks.0.units.0.conv1.weight"]
    arguments = {"features": features, "blocks": blocks, "units": units, "variant": variant,
                 "efficient": "body.blocks.0.units.0.pointwise.weight" in state,
                 "groups": features // int(unit.shape[1])}
    if heads != list(HEADS):
        if len(heads) != 1:
            return None
        arguments["scale"] = heads[0]
        if int(state["entry.weight"].shape[1]) == 3 * heads[0] ** 2:
            arguments["desubpixel"] = True
    if units > 1:
        arguments["shared"] = stored == 1
    if not (local and global_):  # an ablation model (its body residual is not in the weights: see its card)
        arguments["cascade"] = "local" if local else "global" if global_ else "none"
    return arguments


def _detector(efficient: bool):
    def detect(state: StateDict) -> dict | None:
        read = _read(convert(state) if _released(state) else state)
        if read is None or read.pop("efficient") != efficient:
            return None
        if not efficient:  # plain CARN: no groups, no tied units
            if read.pop("groups") != 1 or read.pop("shared", False):
                return None
        return read

    detect.__doc__ = f"Builder arguments of {'carn_m' if efficient else 'carn'} from our or a released layout, else None."
    return detect


def _resolve(arguments: dict) -> dict:
    scale = arguments.get("scale")
    # LR pixels of context: entry 1, two 3x3 convs per unit, the head's first conv 1, then < 1 each for the
    # head's later convs and the exit conv at HR resolution.
    depth = 2 * arguments.get("blocks", 3) * arguments.get("units", 3)
    return {"scales": HEADS if scale is None else (int(scale),), "inputs": ("scale",) if scale is None else (),
            "receptive_field": depth + 4, "input_upsample": int(scale) if arguments.get("desubpixel") else 1}


@register_model(
    "carn", tasks=("sr",), summary="CARN (Ahn et al. 2018): cascading residual network, RGB, x2/x3/x4 heads",
    scales=HEADS, inputs=("scale",), in_channels=3, receptive_field=22, detect=_detector(False), convert=convert,
    resolve=_resolve,
    test_configs=({"features": 8, "blocks": 1, "units": 2},
                  {"features": 8, "blocks": 2, "units": 1, "scale": 3, "variant": "eccv"},
                  {"features": 8, "blocks": 1, "units": 1, "scale": 2, "desubpixel": True},
                  {"features": 8, "blocks": 2, "units": 2, "scale": 2, "cascade": "local"},
                  {"features": 8, "blocks": 2, "units": 2, "scale": 2, "cascade": "none"}),
)
def carn(features: int = 64, blocks: int = 3, units: int = 3, scale: int | None = None,
         variant: str = "thesis", desubpixel: bool = False, cascade: str = "local+global",
         residual: bool | None = None) -> CARN:
    """scale: None builds the multi-scale model (call with scale=2/3/4), 2/3/4/8 a single-scale one;
    desubpixel: the CutBlur form, which takes the LR image nearest-upsampled to HR size (done by the call);
    cascade / residual: thesis Table 2.1's ablation ("none", "local", "global", "local+global"; the body's
    global residual, None: the variant's, on for "thesis")."""
    return CARN(features, blocks, units, scale, variant=variant, desubpixel=desubpixel, cascade=cascade,
                residual=residual)


@register_model(
    "carn_m", tasks=("sr",), summary="CARN-M (Ahn et al. 2018): group convs, one shared unit per block, x2/x3/x4",
    scales=HEADS, inputs=("scale",), in_channels=3, receptive_field=22, detect=_detector(True), convert=convert,
    # Measured on the released carn_m.pth and pcarn_m_l1.pth (32x32 random LR vs fp32, x2/x3/x4): fp16
    # 0.33-0.65/255; bf16 2.4-3.5/255, over the 2/255 bar. Plain CARN: no released weights, not measured.
    fp16=True, resolve=_resolve,
    test_configs=({"features": 8, "blocks": 1, "units": 2},
                  {"features": 8, "blocks": 2, "units": 2, "scale": 2, "variant": "eccv", "shared": False},
                  {"features": 8, "blocks": 1, "units": 2, "scale": 4, "desubpixel": True}),
)
def carn_m(features: int = 64, blocks: int = 3, units: int = 3, scale: int | None = None, groups: int = 4,
           shared: bool = True, variant: str = "thesis", desubpixel: bool = False) -> CARN:
    """groups: G of the efficient unit and the heads; shared: the recursion (one unit per block);
    desubpixel: the CutBlur form (HR-size input, see `carn`)."""
    return CARN(features, blocks, units, scale, groups, efficient=True, shared=shared, variant=variant,
                desubpixel=desubpixel)


def detect_progressive(state: StateDict) -> dict | None:
    """Builder arguments of progressive CARN from our layout (no released weights exist), else None."""
    if "to_rgb.weight" not in state or "stages.0.upsample.0.weight" not in state:
        return None
    return {"stages": _count(state, r"stages\.\d+\.upsample\.0\.weight"),
            "blocks": _count(state, r"stages\.0\.body\.fusions\.\d+\.weight"),
            "units": _count(state, r"stages\.0\.body\.blocks\.0\.fusions\.\d+\.weight"),
            "features": int(state["entry.weight"].shape[0])}


def _resolve_progressive(arguments: dict) -> dict:
    stages, blocks, units = (arguments.get(k, d) for k, d in (("stages", 3), ("blocks", 8), ("units", 4)))
    # Stage k's body and head run at 2^(k-1) x the LR size: its 2BU + 1 convs are that many times fewer LR pixels.
    context = 1 + sum(-(-(2 * blocks * units + 1) // 2**k) for k in range(stages)) + 1
    return {"scales": (2**stages,), "receptive_field": context}


@register_model(
    "progressive_carn", tasks=("sr",),
    summary="progressive CARN (thesis ch. 3): B8U4 cascading body + x2 head per stage, x8 after three stages",
    scales=(8,), in_channels=3, receptive_field=117, detect=detect_progressive, resolve=_resolve_progressive,
    test_configs=({"stages": 2, "blocks": 1, "units": 1, "features": 8},),
)
def progressive_carn(stages: int = 3, blocks: int = 8, units: int = 4, features: int = 64) -> ProgressiveCARN:
    """stages: how many x2 stages (training stage k, output x2^k); blocks x units: each stage's body (B8U4:
    the only reading that gives the thesis's 9.46M parameters; its text also says B4U8)."""
    if stages < 1:
        raise ValueError("progressive CARN needs at least one stage")
    return ProgressiveCARN(stages, blocks, units, features)
