"""MEPSNet (thesis ch. 7; spec methods-thesis.md 6.2, field-conventions 3.4): a mixture of experts with
parameter sharing for spatially heterogeneous distortions (SHDD), blind: one image in, one restored image out.

    feature extraction  conv 3->128, 128->256, 256->256, each + ReLU        (the thesis stresses its width)
    N experts           conv 256->64, `srir` SRIR groups of `blocks` SResidual blocks (SConv-ReLU-SConv + x),
                        a skip around each group and one around the groups, conv 64->64
    fusion              channel attention on the concatenated experts: GAP, 1x1 N*64 -> N*32, ReLU, 1x1 back,
                        sigmoid, scale (ratio 2, the reference code's; the thesis does not say)
    reconstruction      conv N*64 -> N*32, ReLU, conv -> 3; no global image skip (the thesis's text)

Parameter sharing: every SConv of every expert draws its 3x3 weight from ONE global bank of `templates`
(16) tensors 64x64x3x3, as W = sum_j alpha_j T_j with its own alpha (no bias), so the parameter count grows with
the bank, not with the experts. Init: He normal for the templates and the plain convs; each expert's
coefficient vectors (one row per SConv) orthogonal (the reference code's; its overlapping-slice indexing quirk
is not copied). At the thesis's settings (3 experts x 3 SRIR x 12 blocks, 16 templates) the model has 2,241,187
parameters, the reference code's count without its MeanShift's 24 frozen ones (tests/test_mepsnet.py).

`residual_scale` (default 1: the reference's init) multiplies the second SConv of every SResidual block and the
output conv at init: with He init and no global skip the thesis's model starts with outputs of std ~10 (MSE ~200,
still ~5 after 80 CPU steps, measured); 0.1 (BasicSR's `default_init_weights(scale=0.1)`) starts near zero.

Ablations (Tables 7.3-7.4): `experts` (1 = no mixture), `share=False` (every SConv a plain bias-free 3x3 conv:
no parameter sharing), `blocks` / `srir` / `templates`. Inputs in [0, 1] minus the DIV2K mean (the
reference's MeanShift, which works at range 255: the same up to the scale of the first conv's weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.models import register_model

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class TemplateBank(nn.Module):
    """The global bank of K templates (C x C x 3 x 3) every shared conv mixes its weight from."""

    def __init__(self, templates: int, channels: int) -> None:
        super().__init__()
        self.templates = nn.Parameter(torch.empty(templates, channels, channels, 3, 3))
        for template in self.templates.data:
            nn.init.kaiming_normal_(template, nonlinearity="relu")


class SConv(nn.Module):
    """A bias-free 3x3 conv whose weight is `coefficients @ bank` (Eq. 7.3); the bank is not a submodule of it
    (registered once, at the network), so the state dict holds it once."""

    def __init__(self, templates: int) -> None:
        super().__init__()
        self.coefficients = nn.Parameter(torch.zeros(templates))

    def forward(self, x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        weight = torch.tensordot(self.coefficients, bank, dims=1)
        return F.conv2d(x, weight, padding=1)


class PlainConv(nn.Conv2d):
    """The no-sharing ablation: an ordinary bias-free 3x3 conv with SConv's call signature."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, padding=1, bias=False)
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor, bank: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class Expert(nn.Module):
    def __init__(self, in_features: int, features: int, srir: int, blocks: int, templates: int, share: bool) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_features, features, 3, padding=1)
        self.groups = nn.ModuleList(
            nn.ModuleList(nn.ModuleList([SConv(templates), SConv(templates)] if share else
                                        [PlainConv(features), PlainConv(features)]) for _ in range(blocks))
            for _ in range(srir))
        self.tail = nn.Conv2d(features, features, 3, padding=1)
        if share:  # one orthogonal (convs x templates) matrix per expert: distinct mixtures from the start
            rows = torch.empty(2 * srir * blocks, templates)
            nn.init.orthogonal_(rows)
            convs = [conv for group in self.groups for block in group for conv in block]
            for conv, row in zip(convs, rows, strict=True):
                conv.coefficients.data.copy_(row)

    def forward(self, x: torch.Tensor, bank: torch.Tensor | None) -> torch.Tensor:
        x = self.head(x)
        y = x
        for group in self.groups:
            z = y
            for first, second in group:
                z = z + second(F.relu(first(z, bank)), bank)
            y = y + z
        return self.tail(y + x)


class MEPSNet(nn.Module):
    def __init__(self, experts: int = 3, srir: int = 3, blocks: int = 12, templates: int = 16, features: int = 64,
                 extract: int = 256, share: bool = True, residual_scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1), persistent=False)
        self.extract = nn.Sequential(nn.Conv2d(3, extract // 2, 3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv2d(extract // 2, extract, 3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv2d(extract, extract, 3, padding=1), nn.ReLU(inplace=True))
        self.bank = TemplateBank(templates, features) if share else None
        self.experts = nn.ModuleList(Expert(extract, features, srir, blocks, templates, share) for _ in range(experts))
        fused = experts * features
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(fused, fused // 2, 1), nn.ReLU(inplace=True),
                                       nn.Conv2d(fused // 2, fused, 1), nn.Sigmoid())
        self.reconstruct = nn.Sequential(nn.Conv2d(fused, fused // 2, 3, padding=1), nn.ReLU(inplace=True),
                                         nn.Conv2d(fused // 2, 3, 3, padding=1))
        for layer in [*self.extract, *self.reconstruct, *(e.head for e in self.experts), *(e.tail for e in self.experts)]:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        if residual_scale != 1.0:  # the ends of every residual branch and the output conv start small
            for expert in self.experts:
                for group in expert.groups:
                    for _, second in group:
                        (second.coefficients if share else second.weight).data.mul_(residual_scale)
            self.reconstruct[-1].weight.data.mul_(residual_scale)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.extract(image - self.mean)
        bank = self.bank.templates if self.bank is not None else None
        mixed = torch.cat([expert(features, bank) for expert in self.experts], dim=1)
        return self.reconstruct(mixed * self.attention(mixed)) + self.mean


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    """Our layout (`extract.*`, `experts.N.groups.G.B.{0,1}`): the arguments from the tensor shapes."""
    if "extract.0.weight" not in state or "experts.0.head.weight" not in state:
        return None
    share = "bank.templates" in state
    groups = {k.split(".")[3] for k in state if k.startswith("experts.0.groups.")}
    blocks = {k.split(".")[4] for k in state if k.startswith("experts.0.groups.0.")}
    return {"experts": len({k.split(".")[1] for k in state if k.startswith("experts.")}), "srir": len(groups),
            "blocks": len(blocks), "templates": int(state["bank.templates"].shape[0]) if share else 16,
            "features": int(state["experts.0.head.weight"].shape[0]),
            "extract": int(state["extract.4.weight"].shape[0]), "share": share}


def _receptive_field(arguments: dict) -> int:
    """3x3 convs in a row: 3 extraction, head, 2 per block, tail, 2 reconstruction."""
    return 3 + 1 + 2 * arguments.get("srir", 3) * arguments.get("blocks", 12) + 1 + 2


@register_model(
    "mepsnet", tasks=("restore",), blind=True,
    summary="MEPSNet (thesis ch. 7): mixture of 3 experts sharing one bank of 16 conv templates, for spatially "
            "heterogeneous distortions",
    # the fusion's global average pool sees the whole input: a tile would weigh the experts differently (the
    # reference code's test splits each image into 8 overlapping tiles, which changes its outputs the same way)
    tiling="whole", receptive_field=79, resolve=lambda a: {"receptive_field": _receptive_field(a)}, detect=detect,
    test_configs=({"experts": 2, "srir": 1, "blocks": 2, "templates": 4, "features": 8, "extract": 16},
                  {"experts": 1, "srir": 2, "blocks": 1, "features": 8, "extract": 8, "share": False}),
)
def mepsnet(experts: int = 3, srir: int = 3, blocks: int = 12, templates: int = 16, features: int = 64,
            extract: int = 256, share: bool = True, residual_scale: float = 1.0) -> MEPSNet:
    """The thesis's MEPSNet; `experts=1` / `share=False` are the ME / PS ablations of Tables 7.3-7.4."""
    return MEPSNet(experts, srir, blocks, templates, features, extract, share, residual_scale)
