"""The vocabulary of distortion TYPES (thesis ch. 6-7): the names `restorekit analyze` reports, the distortion
recogniser's classes and the Flickr-Distortion / SHDD generators share, each mapped to the engine operator that
makes it and the levels the thesis gives.

Flickr-Distortion (spec methods-thesis.md 5.1): 8 types x 3 levels, mild to strong. Quantisation's levels are not
stated in the thesis: 16 / 8 / 4 grey levels per channel here (our choice, documented in docs/degradations.md).
Detection sets draw a level uniformly between the mildest and the strongest (`range_spec`). SHDD's pool (ch. 7)
adds `contrast` and `identity`, named here too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DistortionType:
    """One distortion type: its vocabulary name, the engine operator and parameter that set its level."""

    name: str
    operator: str
    parameter: str
    levels: tuple[float, ...]  # the thesis's levels, mild -> strong
    fixed: str = ""  # other parameters of the operator, e.g. "clip=true"
    integer: bool = False  # the parameter takes integers (JPEG quality, grey levels)

    def _spec(self, value: str) -> str:
        extra = f",{self.fixed}" if self.fixed else ""
        return f"{self.operator}:{self.parameter}={value}{extra}"

    def spec(self, level: float) -> str:
        """The engine spec of this type at one level."""
        return self._spec(f"{int(level)}" if self.integer else f"{level:g}")

    def range_spec(self) -> str:
        """The engine spec drawing a level uniformly between the mildest and the strongest."""
        low, high = min(self.levels), max(self.levels)
        return self._spec(f"{int(low)}..{int(high)}" if self.integer else f"{low:g}..{high:g}")


FLICKR_DISTORTIONS: tuple[DistortionType, ...] = (
    DistortionType("gaussian_noise", "noise", "var", (0.0125, 0.025, 0.05), "clip=true"),
    DistortionType("salt_pepper", "saltpepper", "amount", (0.0125, 0.025, 0.05)),
    DistortionType("gaussian_blur", "blur", "width", (1.5, 3.0, 6.0), "kind=gaussian"),
    DistortionType("jpeg", "jpeg", "quality", (20, 10, 5), "encoder=pil", integer=True),
    DistortionType("lowpass_noise", "lowpass", "ratio", (0.3, 0.1, 0.03)),
    DistortionType("denoising_artifact", "nlm", "strength", (0.04, 0.06, 0.08)),
    DistortionType("f_noise", "pink", "scale", (2.5, 5.0, 10.0), "clip=true"),
    DistortionType("quantization", "quantize", "levels", (16, 8, 4), integer=True),
)
SHDD_DISTORTIONS: tuple[DistortionType, ...] = (  # the SHDD pool's types beyond Flickr-Distortion's
    DistortionType("contrast", "contrast", "level", (25.0, 40.0)),
    DistortionType("identity", "identity", "", ()),
)
DISTORTIONS: dict[str, DistortionType] = {d.name: d for d in (*FLICKR_DISTORTIONS, *SHDD_DISTORTIONS)}


def distortion(name: str) -> DistortionType:
    if name not in DISTORTIONS:
        raise KeyError(f"unknown distortion type {name!r}; one of {', '.join(DISTORTIONS)}")
    return DISTORTIONS[name]
