"""Training losses, per sample (so strategies can weight levels) and optionally masked (cutout).

* l1, l2 (MSE), charbonnier: sqrt(d^2 + eps^2);
* ssim: 1 - SSIM with the Gaussian window (11, sigma 1.5) and zero 'same' padding of pytorch_ssim, which
  DuRN and MBN train with; C1 = 0.01^2, C2 = 0.03^2 on [0, 1] images;
* mbn: DuRN's mix used by the MBN paper, literally `-1.1 * SSIM + 0.75 * L1` (the spec's "1.1 x SSIM-loss
  + 0.75 x L1"; the same gradients as 1.1 * (1 - SSIM) + 0.75 * L1, and the logged values match DuRN's);
* any weighted sum of these (`train.loss: [{type: l1, weight: 1}, {type: ssim, weight: 0.2}]`).

Perceptual and GAN terms plug in through `register_loss(name, fn)`: a function (pred, target) -> per-sample
loss (B,), e.g. built on a feature extractor a method module ships (torchvision is not a dependency).
`UncertaintyWeighting` is Kendall et al.'s multi-task weighting, one learned log-variance per level.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

PerSampleLoss = Callable[..., torch.Tensor]


def _mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-sample mean of a (B, C, H, W) map, over the pixels the mask keeps (mask (B, 1, H, W), 1 = keep)."""
    if mask is None:
        return values.flatten(1).mean(1)
    mask = mask.expand_as(values)
    return (values * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1.0)


def l1(pred, target, mask=None, **_):
    return _mean((pred - target).abs(), mask)


def l2(pred, target, mask=None, **_):
    return _mean((pred - target) ** 2, mask)


def charbonnier(pred, target, mask=None, eps: float = 1e-3, **_):
    return _mean(torch.sqrt((pred - target) ** 2 + eps * eps), mask)


def _gaussian_window(channels: int, size: int = 11, sigma: float = 1.5, like: torch.Tensor | None = None):
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()
    return window if like is None else window.to(like)


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pytorch_ssim's SSIM map: per channel, 11x11 Gaussian (sigma 1.5), zero 'same' padding, [0, 1] range."""
    channels = pred.shape[1]
    window = _gaussian_window(channels, like=pred)
    pad = window.shape[-1] // 2

    def blur(x):
        return F.conv2d(x, window, padding=pad, groups=channels)

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(pred * target) - mu_p * mu_t
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))


def ssim_value(pred, target, mask=None) -> torch.Tensor:
    """Per-sample SSIM (for the losses; metrics use restorekit.metrics, the MATLAB definition)."""
    return _mean(ssim_map(pred, target), mask)


def ssim(pred, target, mask=None, **_):
    return 1.0 - ssim_value(pred, target, mask)


def mbn(pred, target, mask=None, **_):
    """DuRN/MBN: -1.1 * SSIM + 0.75 * L1."""
    return -1.1 * ssim_value(pred, target, mask) + 0.75 * l1(pred, target, mask)


# THE loss registry: config validation (`train.loss`, stage losses) and `Loss` both read it.
LOSSES: dict[str, PerSampleLoss] = {"l1": l1, "l2": l2, "charbonnier": charbonnier, "ssim": ssim, "mbn": mbn}


def register_loss(name: str, fn: PerSampleLoss) -> None:
    """Add a loss term usable in configs (perceptual, adversarial, ...): fn(pred, target, mask=None) -> (B,)."""
    if name in LOSSES:
        raise ValueError(f"loss {name!r} exists already")
    LOSSES[name] = fn


def unregister_loss(name: str) -> None:
    """Remove a registered loss (tests; the built-in ones stay)."""
    if name in ("l1", "l2", "charbonnier", "ssim", "mbn"):
        raise ValueError(f"loss {name!r} is built in")
    LOSSES.pop(name, None)


def loss_names() -> list[str]:
    return list(LOSSES)


class Loss:
    """Weighted sum of terms; call -> per-sample loss (B,)."""

    def __init__(self, terms: list, charbonnier_eps: float = 1e-3):
        self.terms = []
        for term in terms:
            kind, weight = (term["type"], term["weight"]) if isinstance(term, dict) else (term.type, term.weight)
            if kind not in LOSSES:
                raise ValueError(f"unknown loss {kind!r}")
            self.terms.append((LOSSES[kind], float(weight)))
        self.eps = charbonnier_eps

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        total = None
        for fn, weight in self.terms:
            value = weight * fn(pred, target, mask, eps=self.eps)
            total = value if total is None else total + value
        return total


class UncertaintyWeighting(nn.Module):
    """Kendall et al.'s multi-task weighting: sum over levels t in the batch of exp(-s_t) * L_t + s_t,
    with s_t a learned log-variance (initialised to 0, i.e. weight 1) and L_t the mean loss of level t."""

    def __init__(self, n_levels: int):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(n_levels))

    def forward(self, per_sample: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        total = per_sample.new_zeros(())
        for level in torch.unique(levels).tolist():
            level_loss = per_sample[levels == level].mean()
            s = self.log_vars[level]
            total = total + torch.exp(-s) * level_loss + s
        return total

    def weights(self) -> list[float]:
        return torch.exp(-self.log_vars.detach()).tolist()
