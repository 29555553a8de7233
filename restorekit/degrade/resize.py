"""Resizing operators: MATLAB-bicubic down/up-scaling, blur-free decimation (DL-Net's ↓t), low-pass noise.

Evaluation (`apply_one`) resizes through `restorekit.ops.imresize` in float64 and rounds to uint8
levels, like the SR benchmarks' saved LR PNGs; the training path uses the same MATLAB matrices in the
batch's dtype (results can differ by one grey level where a value sits on a rounding tie).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from restorekit import ops
from restorekit.degrade import linear
from restorekit.degrade.operator import Extras, Level, Operator, SizeError, register
from restorekit.degrade.params import Param, possible_values
from restorekit.degrade.seeding import Context
from restorekit.errors import SpecError


def _same_level(levels: Sequence[Level], key: str, label: str) -> float:
    """Size-changing levels must agree within a batch (the output is one tensor)."""
    value = levels[0][key]
    if any(lv[key] != value for lv in levels):
        raise SpecError(f"{label}: {key} differs within one batch; size-changing levels are drawn once per batch")
    return value


def _integer_scale(scale: float) -> int | None:
    return int(scale) if float(scale).is_integer() else None


def _bicubic(x: torch.Tensor, size: tuple[int, int], exact: bool) -> torch.Tensor:
    """MATLAB bicubic resize of (B, C, H, W) to `size`: float64 ops.imresize when exact, else batched GEMMs."""
    if exact:
        return ops.imresize(x.to(torch.float64), size=size).to(x.dtype)
    rows, cols = linear.resize_matrices(x.shape[-2], x.shape[-1], size, x)
    return linear.separable(x, rows, cols)


def _maybe_quantize(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    """Round to uint8 levels, in place: `x` is always a fresh result of this module."""
    if not quantize:
        return x
    return linear.quantize_(x)


@register
class Downsample(Operator):
    """Downscale by `scale`: MATLAB bicubic (antialiased), or DL-Net's plain decimation x[::t, ::t]."""

    name = "down"
    primary = "scale"
    summary = "downsampling (MATLAB bicubic, or decimation)"
    source = "SR benchmarks (Set5/Set14/BSD100 x2/x3/x4); DL-Net y = (W x)↓t; AdaFM x2..x6"
    changes_size = True
    differentiable = True
    params = (
        Param("scale", "float", "downscaling factor (integer, or any > 1 for bicubic)", low=1, high=64),
        Param("method", "str", "bicubic (MATLAB imresize) or decimate (keep every scale-th pixel)", default="bicubic", options=("bicubic", "decimate")),
        Param("quantize", "bool", "round to uint8 levels, like saved LR PNGs", default="true"),
    )

    def validate(self) -> None:
        super().validate()
        if "decimate" in (possible_values(self.values["method"]) or ()):
            scales = possible_values(self.values["scale"])
            if scales is None or any(not float(v).is_integer() for v in scales):
                raise SpecError("down:method=decimate needs an integer scale (fixed or a choice like 2|3|4)")

    def output_size(self, height: int, width: int, scale: float) -> tuple[int, int]:
        factor = _integer_scale(scale)
        if factor is not None:
            if height % factor or width % factor:
                raise SizeError(
                    f"down:scale={factor}: image is {height}x{width} (HxW), not divisible by {factor}; "
                    f"modcrop first (restorekit.ops.modcrop) to {height - height % factor}x{width - width % factor}"
                )
            return height // factor, width // factor
        return math.ceil(round(height / scale, 9)), math.ceil(round(width / scale, 9))

    def _resize(self, x: torch.Tensor, level: Level, exact: bool) -> torch.Tensor:
        scale = level["scale"]
        size = self.output_size(x.shape[-2], x.shape[-1], scale)
        if level["method"] == "decimate":
            step = int(scale)
            return x[..., ::step, ::step].clone()  # a copy: quantisation happens in place
        if _integer_scale(scale) is None:
            return ops.imresize(x.to(torch.float64) if exact else x, 1 / scale).to(x.dtype)
        return _bicubic(x, size, exact)

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        _same_level(levels, "scale", self.label())
        level = levels[0]
        out = _maybe_quantize(self._resize(x, level, ctx.evaluation), level["quantize"])
        return out, [{} for _ in levels]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._resize(x, level, exact=False)


@register
class Upsample(Operator):
    """Upscale by `scale` with MATLAB bicubic: the VDSR/RED-Net/AdaFM 'interpolated LR' input."""

    name = "up"
    primary = "scale"
    summary = "MATLAB bicubic upsampling"
    source = "RED-Net and AdaFM SR inputs (LR bicubic-upsampled to the HR size)"
    changes_size = True
    differentiable = True
    params = (
        Param("scale", "float", "upscaling factor", low=1, high=64),
        Param("quantize", "bool", "round to uint8 levels", default="true"),
    )

    def _resize(self, x: torch.Tensor, level: Level, exact: bool) -> torch.Tensor:
        scale = level["scale"]
        size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
        return _bicubic(x, size, exact)  # dense BLAS beat a 4-tap polyphase filter here (measured)

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        _same_level(levels, "scale", self.label())
        return _maybe_quantize(self._resize(x, levels[0], ctx.evaluation), levels[0]["quantize"]), [{} for _ in levels]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._resize(x, level, exact=False)


@register
class LowPass(Operator):
    """'Low-pass noise': scale down by `ratio` and back up to the original size (MATLAB bicubic both ways)."""

    name = "lowpass"
    primary = "ratio"
    summary = "low-pass noise (down-then-up resize)"
    source = "Flickr-Distortion ratios {0.3, 0.1, 0.03}"
    differentiable = True
    params = (
        Param("ratio", "float", "intermediate size as a fraction of the original", default="0.3|0.1|0.03", low=0, low_open=True, high=1),
        Param("quantize", "bool", "round to uint8 levels", default="false"),
    )

    def _lowpass(self, x: torch.Tensor, ratio: float, exact: bool) -> torch.Tensor:
        h, w = x.shape[-2:]
        small = (max(1, math.ceil(round(h * ratio, 9))), max(1, math.ceil(round(w * ratio, 9))))
        return _bicubic(_bicubic(x, small, exact), (h, w), exact)

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        out = torch.empty_like(x)
        groups: dict[float, list[int]] = {}
        for i, lv in enumerate(levels):
            groups.setdefault(lv["ratio"], []).append(i)
        for ratio, index in groups.items():
            out[index] = self._lowpass(x[index], ratio, ctx.evaluation)
        quantize = [lv["quantize"] for lv in levels]
        if any(quantize):
            out = torch.stack([_maybe_quantize(out[i], q) for i, q in enumerate(quantize)])
        return out, [{} for _ in levels]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._lowpass(x, level["ratio"], exact=False)
