"""Weather operators: synthetic rain streaks and haze from the atmospheric scattering model.

Neither paper's generator is public (MBN made rain in GIMP and took haze from RESIDE-β's renderings with
estimated depth), so these are documented stand-ins that keep MBN's level sets as parameters.
Both are affine in the clean image given their rain layer / transmission map, which is their `forward`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from restorekit.degrade import linear
from restorekit.degrade.operator import Extras, Level, Operator, host_exp, register
from restorekit.degrade.params import Param
from restorekit.degrade.seeding import Context


def streak_taps(length: int, angle: float) -> list[tuple[int, int, float]]:
    """Unit taps along a centred line of `length` px at `angle` degrees (counter-clockwise, 90 = vertical)."""
    s, c = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    offsets = {(-round((i - (length - 1) / 2) * s), round((i - (length - 1) / 2) * c)) for i in range(length)}
    return [(dy, dx, 1.0) for dy, dx in sorted(offsets)]


@register
class Rain(Operator):
    """Rain streaks: sparse bright seeds smeared along a line (GIMP's noise + motion blur), screen-blended.

    seeds: each pixel starts a drop with probability `density`, brightness U(0.5, 1]; streaks: the seeds
    summed along a `length`-px line at `angle`; layer R = intensity · min(streaks, 1);
    y = 1 − (1 − x)(1 − R) = x + R − x·R.
    """

    name = "rain"
    primary = "density"
    summary = "synthetic rain streaks"
    source = "MBN App. C (GIMP): length {10,20,35,50}, angle {70..110}°, noise level {0.55..0.8} as intensity; density ours"
    differentiable = True
    needs_state = True
    params = (
        Param("density", "float", "fraction of pixels that seed a streak", default="0.005..0.02", low=0, high=1),
        Param("length", "int", "streak length in pixels", default="10|20|35|50", low=1, high=1000),
        Param("angle", "float", "streak direction in degrees (90 = vertical)", default="70|80|85|90|100|105|110", low=-360, high=360),
        Param("intensity", "float", "brightness of a full streak", default="0.55|0.65|0.7|0.8", low=0, high=1),
    )

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        b, _, h, w = x.shape
        u = ctx.uniform((b, 1, h, w), like=x)
        density = torch.tensor([lv["density"] for lv in levels], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        seeds = torch.where(u < density, 1 - 0.5 * u / density.clamp_min(1e-12), torch.zeros_like(u))
        keys = [(lv["length"], lv["angle"]) for lv in levels]
        if all(k == keys[0] for k in keys):
            streaks = linear.shift_sum(seeds, streak_taps(*keys[0]), border="zeros")
        else:
            streaks = linear.correlate_taps(seeds, [streak_taps(*k) for k in keys], border="zeros")
        intensity = torch.tensor([lv["intensity"] for lv in levels], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        layer = intensity * streaks.clamp(max=1)
        return x + layer - x * layer, [{"layer": layer[i]} for i in range(b)]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        layer = state["layer"].to(x.device, x.dtype)
        return x + layer - x * layer


def depth_proxy(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) relative depth in [0, 1] from the image itself: far = high in the frame and bright.

    0.6 · (1 − row / (H − 1)) + 0.4 · luminance smoothed over 1/8 of the image. A stand-in for the
    estimated depth maps RESIDE uses, which we do not have.
    """
    b, c, h, w = x.shape
    luma = x.mean(dim=1, keepdim=True) if c != 3 else (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    factor = max(1, min(h, w) // 8)
    smooth = F.avg_pool2d(luma, factor, ceil_mode=True) if factor > 1 else luma
    smooth = F.interpolate(smooth, size=(h, w), mode="bilinear", align_corners=False)
    rows = torch.linspace(1, 0, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1)
    return (0.6 * rows + 0.4 * smooth.clamp(0, 1)).clamp(0, 1)


@register
class Haze(Operator):
    """Haze by atmospheric scattering: I = J t + A (1 − t), t = exp(−β d), d = depth · depth_proxy(J)."""

    name = "haze"
    primary = "beta"
    summary = "haze (atmospheric scattering)"
    source = "MBN / RESIDE-β: β∈{0.08..0.2} (v2), A∈{0.8..1} (v1); depth proxy ours"
    differentiable = True
    params = (
        Param("beta", "float", "scattering coefficient β", default="0.08|0.1|0.12|0.16|0.2", low=0, high=10),
        Param("airlight", "float", "atmospheric light A", default="0.8|0.85|0.9|0.95|1", low=0, high=1),
        Param("depth", "float", "depth of the farthest point (scene units, RESIDE-like metres)", default="10", low=0, high=1000),
    )

    @staticmethod
    def transmission(x: torch.Tensor, levels: Sequence[Level]) -> torch.Tensor:
        beta_depth = torch.tensor([lv["beta"] * lv["depth"] for lv in levels], dtype=x.dtype, device=x.device)
        return host_exp(-beta_depth.view(-1, 1, 1, 1) * depth_proxy(x))

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        t = self.transmission(x, levels)
        airlight = torch.tensor([lv["airlight"] for lv in levels], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        return x * t + airlight * (1 - t), [{"transmission": t[i]} for i in range(len(levels))]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Uses the transmission of the clean image when the record holds it, else estimates it from `x`."""
        t = state["transmission"].to(x.device, x.dtype) if "transmission" in state else self.transmission(x, [level] * x.shape[0])
        return x * t + level["airlight"] * (1 - t)
