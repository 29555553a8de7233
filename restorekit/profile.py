"""Parameters and Mult-Adds of a model: the efficiency columns of the thesis's Table 2.4 (CARN).

The thesis's convention (Sec. 2.4 and the spec's arithmetic cross-checks): Mult-Adds are the
multiply-accumulates of the convolution and linear layers needed to produce ONE image of the stated
OUTPUT size (720p, 1280x720, in Chapter 2), biases and activations excluded. We do not count by hand:
`torch.utils.flop_counter.FlopCounterMode` sees every convolution the forward pass dispatches (it counts
2 FLOPs per multiply-accumulate and no bias adds), on the meta device, so a 720p count allocates and
computes nothing. Only convolutions (modules or `F.conv2d`, transposed and grouped ones included) and the
matrix products of `nn.Linear` layers count. Everything else is free by this convention: pixel shuffle,
interpolation, elementwise additions and activations, and the MATLAB-bicubic resize that VDSR, DnCNN-3
and IDN run inside their call as two matrix products (so the `bicubic` baseline costs 0).

A transposed convolution costs weights x INPUT pixels (each input pixel is multiplied with the whole
kernel), which is its true multiply-accumulate count, as in fvcore and ptflops.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from restorekit.errors import ModelError, RestorekitError
from restorekit.infer import conditions_for
from restorekit.models import Model

OUTPUT_720P = (1280, 720)  # (width, height): the thesis's Chapter-2 output size
MAX_SIDE = 1 << 16

# The forward-convolution ops of the flop counter's registry; every other op it knows (matrix products,
# attention) is counted only inside an nn.Linear.
_CONVOLUTIONS = frozenset(
    getattr(torch.ops.aten, name) for name in
    ("convolution", "_convolution", "cudnn_convolution", "convolution_overrideable", "_slow_conv2d_forward")
    if hasattr(torch.ops.aten, name)
)
_FLOPS_PER_MULT_ADD = 2  # FlopCounterMode counts a multiply and an add per multiply-accumulate
# A nominal noise level for models whose call needs one (FFDNet's map): their cost does not depend on it.
_NOMINAL_LEVEL = 25.0


@dataclass(frozen=True)
class Profile:
    """One model's size and cost at one scale and output size."""

    model: str
    params: int  # every parameter of the module (buffers such as CARN's RGB mean are not parameters)
    params_without_bias: int  # minus the bias vectors of convolution and linear layers
    scale: int
    output_size: tuple[int, int]  # (width, height)
    mult_adds: int

    def to_json(self) -> dict[str, Any]:
        width, height = self.output_size
        return {"model": self.model, "params": self.params, "params_without_bias": self.params_without_bias,
                "mult_adds": self.mult_adds, "output_size": f"{width}x{height}", "scale": self.scale}


# ---------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------


def _is_layer_bias(module: nn.Module, name: str) -> bool:
    return name == "bias" and isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))


def count_params(module: nn.Module) -> int:
    """Every parameter tensor's elements, each shared tensor once (CARN-M's recursive blocks)."""
    return sum(p.numel() for p in module.parameters())


def count_params_without_bias(module: nn.Module) -> int:
    """The weights: every parameter except the `bias` vector of each convolution (plain, grouped or
    transposed) and linear layer; other parameters (a norm layer's scale and shift) count. The thesis
    reports both counts: CARN-M 412K without biases, CARN 1,592K with and 1,589K without (Tables 2.4, 2.5)."""
    shared: set[int] = set()
    total = 0
    for layer in module.modules():
        for name, parameter in layer.named_parameters(recurse=False):
            if id(parameter) not in shared and not _is_layer_bias(layer, name):
                total += parameter.numel()
            shared.add(id(parameter))
    return total


# ---------------------------------------------------------------------------------------------------
# Mult-Adds
# ---------------------------------------------------------------------------------------------------


def parse_output_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720): width x height, each side 1..65536."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match:
        raise RestorekitError(f"--output-size {text!r}: expected WIDTHxHEIGHT such as 1280x720")
    width, height = int(match.group(1)), int(match.group(2))
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise RestorekitError(f"--output-size {text!r}: each side must be 1..{MAX_SIDE} pixels")
    return width, height


class _LinearScope:
    """Whether the forward pass is inside an nn.Linear: matrix products count there and nowhere else
    (a model's bicubic resize is two matrix products too)."""

    def __init__(self) -> None:
        self.depth = 0

    @contextmanager
    def watching(self, module: nn.Module) -> Iterator[None]:
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        handles = [h for m in linears for h in (m.register_forward_pre_hook(self._enter),
                                                 m.register_forward_hook(self._leave))]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _enter(self, *_: Any) -> None:
        self.depth += 1

    def _leave(self, *_: Any) -> None:
        self.depth -= 1

    def only_inside(self, formula: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> int:
            return formula(*args, **kwargs) if self.depth else 0

        counted._get_raw = True  # the registry's formula already reads shapes from tensors
        return counted


def _input_side(output_side: int, scale: int, multiple: int) -> int:
    """The whole-number input side whose output covers `output_side`, padded as `infer.run_model` pads."""
    side = -(-output_side // scale)
    return side + (-side) % max(1, multiple)


def _meta_copy(module: nn.Module) -> nn.Module:
    """`module` with its parameters and buffers as meta tensors: deepcopy finds each tensor already
    "copied" in its memo, so no value is cloned (9.5M parameters of progressive CARN: 0.6 s saved)."""
    memo: dict[int, Any] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        empty = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(empty, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else empty
    return copy.deepcopy(module, memo)


def _nominal_conditions(model: Model, scale: int, height: int, width: int) -> dict[str, Any]:
    """The call conditions the product would pass (strength 1 for a modulated model, the scale of a
    multi-scale one), with a nominal level where the call needs one; none changes the cost."""
    inputs = model.info.inputs
    conditions = conditions_for(model)
    if "scale" in inputs:
        conditions["scale"] = scale
    if "level" in inputs:
        conditions["level"] = _NOMINAL_LEVEL
    if "mask" in inputs:
        conditions["mask"] = torch.ones(1, 1, height, width, device="meta")
    return conditions


def count_mult_adds(model: Model, scale: int | None = None, output_size: tuple[int, int] = OUTPUT_720P) -> int:
    """Multiply-accumulates of the convolution and linear layers for one image of `output_size`
    (width, height) at `scale` (see the module docstring for what counts).

    The model runs on a meta copy (the caller's weights are untouched). When an output side is not a
    multiple of the scale (1280 at x3), the next whole input size is counted and the count rescaled to
    the stated output area: convolutions cost the same per output pixel, which is how the thesis's
    weights-times-output-pixels figures (118.8G for CARN x3 at 720p) arise."""
    scale = model.info.scale_for(scale)
    width, height = output_size
    multiple = model.info.size_multiple
    in_height, in_width = _input_side(height, scale, multiple), _input_side(width, scale, multiple)
    channels = model.info.in_channels or 3
    meta = Model(_meta_copy(model.module), model.info, model.name, model.card)
    image = torch.empty(1, channels, in_height, in_width, device="meta")
    conditions = _nominal_conditions(meta, scale, in_height, in_width)
    scope = _LinearScope()
    others = {op: scope.only_inside(formula) for op, formula in flop_registry.items() if op not in _CONVOLUTIONS}
    counter = FlopCounterMode(display=False, custom_mapping=others)
    try:
        with torch.no_grad(), scope.watching(meta.module), counter:
            meta(image, **conditions)
    except RestorekitError:
        raise
    except Exception as err:  # a forward pass that needs real values (.item(), data-dependent shapes)
        reason = (str(err).strip().splitlines() or [""])[0][:160]
        raise ModelError(f"{model.name}: cannot be counted without running it on real data "
                         f"({type(err).__name__}: {reason})") from err
    mult_adds = counter.get_total_flops() // _FLOPS_PER_MULT_ADD
    counted_area = in_height * scale * in_width * scale
    if counted_area == width * height:
        return mult_adds
    return round(mult_adds * width * height / counted_area)


def profile(model: Model, scale: int | None = None, output_size: tuple[int, int] = OUTPUT_720P) -> Profile:
    """Parameters (with and without biases) and Mult-Adds of `model` at `scale` and `output_size` (width, height)."""
    module = model.module
    scale = model.info.scale_for(scale)
    return Profile(model=model.name, params=count_params(module), params_without_bias=count_params_without_bias(module),
                   scale=scale, output_size=output_size, mult_adds=count_mult_adds(model, scale, output_size))


def human(count: float) -> str:
    """1591939 -> '1.59M', 222.82e9 -> '222.8G', 2.144e12 -> '2,144.0G', 57184 -> '57.2K': the thesis's
    table units (Mult-Adds stay in G however large, as in its 17,974.3G for DRCN)."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.2f}{unit}" if unit == "M" else f"{count / size:,.1f}{unit}"
    return f"{count:g}"


__all__ = ["OUTPUT_720P", "Profile", "count_mult_adds", "count_params", "count_params_without_bias", "human",
           "parse_output_size", "profile"]
