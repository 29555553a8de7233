"""Discriminators of the adversarial recipe (`adversarial.discriminator`). They judge images during training
and are never restoration models, so they live here and not in the model registry (no zoo, no restore).

* `patch`: a small PatchGAN (pix2pix): stride-2 convs with LeakyReLU(0.2), one logit per patch.
* `pcarn`: the PCARN discriminator (thesis Fig. 2.1 bottom, spec 1.3): nine convs k3n64s1, k4n64s2,
  k3n128s1, k4n128s2, k3n256s1, k4n256s2, k3n512s1, k3n512s1 and k3n1s1; no BatchNorm after the first,
  BatchNorm + LeakyReLU after the next seven, none after the last (reference code nmhkahn/PCARN-pytorch,
  LeakyReLU at torch's default slope 0.01). The figure's final Sigmoid is the one inside the BCE loss
  (`binary_cross_entropy_with_logits` == BCE(sigmoid(x)), without its saturation), so the module
  returns logits.

Every discriminator is wrapped in `MultiScaleDiscriminator`: an image pyramid by average pooling, one
separate network of identical architecture per factor (thesis Eq. 2.6, MSD: factors 1, 2, 4), whose losses
the recipe sums. A plain discriminator is the pyramid with the single factor 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ConfigError

# PCARN's convs after the first, as (kernel, out-channels in units of the first conv's width, stride).
PCARN_LAYERS = ((4, 1, 2), (3, 2, 1), (4, 2, 2), (3, 4, 1), (4, 4, 2), (3, 8, 1), (3, 8, 1))
DEFAULT_FEATURES = {"patch": 32, "pcarn": 64}


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (pix2pix): stride-2 convs with LeakyReLU, one real/fake logit per patch."""

    def __init__(self, channels: int = 3, features: int = 32, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.LeakyReLU(0.2)]
        width = features
        for _ in range(depth):
            layers += [nn.Conv2d(width, width * 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            width *= 2
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.min_side = 2**depth  # each k4s2p1 conv halves (floor); below this the last one has no output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PCARNDiscriminator(nn.Module):
    """The thesis's 9-conv discriminator; `features` is the first conv's width (64 in the thesis)."""

    def __init__(self, channels: int = 3, features: int = 64):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.LeakyReLU()]
        width = features
        for kernel, multiple, stride in PCARN_LAYERS:
            out = features * multiple
            layers += [nn.Conv2d(width, out, kernel, stride, padding=1), nn.BatchNorm2d(out), nn.LeakyReLU()]
            width = out
        layers.append(nn.Conv2d(width, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.min_side = 8  # three k4s2p1 convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MultiScaleDiscriminator(nn.Module):
    """One discriminator per pyramid factor (average pooling by the factor; 1 = the image itself).

    `forward(*images)` judges each image batch in its own pass and returns, per image, the logit maps per
    factor: the reference code calls D(HR) and D(SR) separately, so BatchNorm normalises real and fake
    batches apart; one call (one DDP forward per backward) still serves both."""

    def __init__(self, build: Callable[[], nn.Module], factors: Sequence[int] = (1,)):
        super().__init__()
        if not factors or any(f < 1 for f in factors):
            raise ValueError(f"pyramid factors must be positive integers, got {list(factors)}")
        self.factors = tuple(int(f) for f in factors)
        self.nets = nn.ModuleList(build() for _ in self.factors)

    @property
    def min_side(self) -> int:
        """The smallest image side every member can judge."""
        return max(f * net.min_side for f, net in zip(self.factors, self.nets, strict=True))

    def judge(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [net(F.avg_pool2d(image, f) if f > 1 else image) for f, net in zip(self.factors, self.nets, strict=True)]

    def forward(self, *images: torch.Tensor) -> list[list[torch.Tensor]]:
        return [self.judge(image) for image in images]


def build_discriminator(kind: str, channels: int, features: int | None = None, depth: int = 3,
                        scales: Sequence[int] = (1,)) -> MultiScaleDiscriminator:
    """The configured discriminator (`adversarial.discriminator`), always as a pyramid of members."""
    width = features or DEFAULT_FEATURES[kind]
    if kind == "patch":
        return MultiScaleDiscriminator(lambda: PatchDiscriminator(channels, width, depth), scales)
    if kind == "pcarn":
        return MultiScaleDiscriminator(lambda: PCARNDiscriminator(channels, width), scales)
    raise ConfigError(f"unknown discriminator {kind!r}; choose one of: {', '.join(DEFAULT_FEATURES)}")
