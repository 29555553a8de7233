"""Noise operators: Gaussian (KAIR float or MATLAB clipped+quantised), pink 1/f, quantisation, salt & pepper.

All noise is the ε of y = (W x)↓t + ε, so their differentiable `forward` is the identity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from restorekit.degrade.linear import quantize_
from restorekit.degrade.operator import Extras, Level, Operator, register
from restorekit.degrade.params import Param
from restorekit.degrade.seeding import Context
from restorekit.errors import SpecError


class _AdditiveNoise(Operator):
    """Noise operators share the identity forward: the likelihood models W x, not ε."""

    differentiable = True

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return x


def _finish(y: torch.Tensor, clip: bool, quantize: bool) -> torch.Tensor:
    """Optional clamp to [0, 1] and rounding to uint8 levels (the saved-PNG pipelines), in place on `y`
    (always a tensor the operator created)."""
    if quantize:
        return quantize_(y)
    return y.clamp_(0, 1) if clip else y


def finish_batch(y: torch.Tensor, levels: Sequence[Level]) -> torch.Tensor:
    """`_finish` per sample, in one call when the batch shares its clip/quantize settings."""
    flags = [(bool(lv.get("clip", False)), bool(lv.get("quantize", False))) for lv in levels]
    if all(f == flags[0] for f in flags):
        return _finish(y, *flags[0])
    return torch.stack([_finish(y[i], *f) for i, f in enumerate(flags)])


@register
class GaussianNoise(_AdditiveNoise):
    """Additive white Gaussian noise; the default reproduces KAIR/DnCNN's test inputs exactly."""

    name = "noise"
    primary = "sigma"
    summary = "additive white Gaussian noise"
    source = "RED-Net σ∈{10,30,50,70}; AdaFM σ∈{15,25,35,50,75}; KAIR/SwinIR protocol; Flickr-Distortion/SHDD `var`"
    params = (
        Param("sigma", "float", "standard deviation on the 0-255 scale", default=None, low=0, high=255),
        Param("var", "float", "variance on the [0, 1] scale (scikit-image `random_noise`)", default=None, low=0, high=1),
        Param("clip", "bool", "clamp the noisy image to [0, 1]", default="false"),
        Param("quantize", "bool", "round to uint8 levels (implies clip): the MATLAB/AdaFM saved-PNG pipeline", default="false"),
        Param(
            "rng",
            "str",
            "numpy: legacy RandomState(seed).normal(0, σ/255, (H, W, C)) as KAIR; torch: torch.randn on the "
            "tensor's device; auto: numpy in apply_one, torch on the training path",
            default="auto",
            options=("auto", "numpy", "torch"),
        ),
    )

    def validate(self) -> None:
        super().validate()
        if ("sigma" in self.values) == ("var" in self.values):
            raise SpecError("noise: give exactly one of sigma= (0-255 scale) or var= ([0, 1] variance)")

    @staticmethod
    def std01(level: Level) -> float:
        """Standard deviation on the [0, 1] scale, computed as KAIR does (sigma / 255.)."""
        return level["sigma"] / 255.0 if "sigma" in level else math.sqrt(level["var"])

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        rng = levels[0]["rng"]
        if rng == "auto":
            rng = "numpy" if ctx.evaluation else "torch"
        if rng == "numpy":
            noisy = torch.stack([self._numpy_sample(x[i], levels[i], self._seed(ctx, i)) for i in range(len(levels))])
        elif ctx.evaluation:
            noisy = torch.stack([self._torch_sample(x[i], levels[i], self._seed(ctx, i)) for i in range(len(levels))])
        else:
            std = torch.tensor([self.std01(lv) for lv in levels], dtype=x.dtype, device=x.device)
            noisy = ctx.normal(tuple(x.shape), like=x).mul_(std.view(-1, 1, 1, 1)).add_(x)
        return finish_batch(noisy, levels), [{"rng": rng} for _ in levels]

    @staticmethod
    def _seed(ctx: Context, index: int) -> int:
        return ctx.seeds[index] if ctx.seeds is not None else ctx.sample_seed()

    def _numpy_sample(self, image: torch.Tensor, level: Level, seed: int) -> torch.Tensor:
        """KAIR main_test_dncnn.py: np.random.seed(seed); img += np.random.normal(0, σ/255., img.shape)."""
        c, h, w = image.shape
        noise = np.random.RandomState(seed).normal(0, self.std01(level), size=(h, w, c))
        hwc = image.detach().to("cpu", torch.float64).permute(1, 2, 0).numpy()
        noisy = torch.from_numpy(hwc + noise).permute(2, 0, 1)
        return noisy.to(image.device, image.dtype)

    def _torch_sample(self, image: torch.Tensor, level: Level, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(image.shape, generator=generator, dtype=torch.float64) * self.std01(level)
        return (image.to(torch.float64) + noise.to(image.device)).to(image.dtype)


def pink_amplitude(height: int, width: int, alphas: Sequence[float]) -> np.ndarray:
    """(A, 1, H, W // 2 + 1, 1) spectral amplitude f^(-alpha / 2) (power ∝ 1/f^alpha) per alpha, 0 at DC.

    Computed with numpy on the host (a small grid): torch's pow/log on CPU are not reproducible from
    process to process here (see `operator.host_exp`)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    radius[0, 0] = 1.0
    amplitude = radius[None] ** (-np.asarray(alphas, dtype=np.float64)[:, None, None] / 2)
    amplitude[:, 0, 0] = 0.0  # no DC: the noise has zero mean in every image
    return amplitude[:, None, :, :, None]


@register
class PinkNoise(_AdditiveNoise):
    """1/f ("pink", "f-noise") noise: white Gaussian noise shaped so its power falls as 1/f^alpha."""

    name = "pink"
    primary = "scale"
    summary = "pink (1/f) noise"
    source = "SHDD f-noise scale [6, 10]; Flickr-Distortion fnoise"
    params = (
        Param("scale", "float", "standard deviation on the 0-255 scale", default="6..10", low=0, high=255),
        Param("alpha", "float", "spectral exponent: power ∝ 1/f^alpha (1 = pink)", default="1", low=0, high=4),
        Param("clip", "bool", "clamp to [0, 1]", default="false"),
    )

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        b, c, h, w = x.shape
        alphas = [lv["alpha"] for lv in levels]
        shared = all(a == alphas[0] for a in alphas)
        amplitude = torch.from_numpy(pink_amplitude(h, w, alphas[:1] if shared else alphas)).to(x.device, x.dtype)
        # The spectrum of white Gaussian noise is complex Gaussian: draw it directly (one FFT saved),
        # as (real, imaginary) pairs shaped in place.
        spectrum = ctx.normal((b, c, h, w // 2 + 1, 2), like=x).mul_(amplitude)
        shaped = torch.fft.irfft2(torch.view_as_complex(spectrum), s=(h, w))
        # Zero DC makes every image's mean exactly 0, so its standard deviation is its RMS.
        rms = shaped.square().mean(dim=(-2, -1), keepdim=True).sqrt_().clamp_min_(1e-12)
        scale = torch.tensor([lv["scale"] / 255.0 for lv in levels], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        shaped.mul_(scale / rms).add_(x)
        return finish_batch(shaped, levels), [{} for _ in levels]


@register
class QuantizationNoise(_AdditiveNoise):
    """Uniform quantisation of each channel to `levels` grey levels."""

    name = "quantize"
    primary = "levels"
    summary = "quantisation to N grey levels per channel"
    source = "Flickr-Distortion quantization noise (levels not stated in the thesis)"
    params = (Param("levels", "int", "number of grey levels per channel (256 = uint8 rounding)", low=2, high=65536),)

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        steps = torch.tensor([lv["levels"] - 1.0 for lv in levels], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        return (x.clamp(0, 1) * steps).round() / steps, [{} for _ in levels]


@register
class SaltPepper(_AdditiveNoise):
    """Impulse noise as scikit-image `random_noise(mode='s&p')`: each value flips to 0 or 1 with prob `amount`."""

    name = "saltpepper"
    primary = "amount"
    summary = "salt & pepper (impulse) noise"
    source = "Flickr-Distortion amount {0.0125, 0.025, 0.05}"
    params = (
        Param("amount", "float", "fraction of values replaced", default="0.0125|0.025|0.05", low=0, high=1),
        Param("salt", "float", "fraction of replaced values set to 1 (the rest to 0)", default="0.5", low=0, high=1),
    )

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        # One uniform u per value: u < amount flips it, and given that, u / amount is again uniform,
        # so u < amount * salt makes it salt (1) with probability `salt`, else pepper (0).
        u = ctx.uniform(tuple(x.shape), like=x)
        amount = torch.tensor([lv["amount"] for lv in levels], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        salt = torch.tensor([lv["salt"] for lv in levels], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        out = torch.where(u < amount, (u < amount * salt).to(x.dtype), x)
        return out, [{} for _ in levels]
