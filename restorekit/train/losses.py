"""Training losses, per sample (so strategies can weight levels) and optionally masked (cutout).

* l1, l2 (MSE), charbonnier: sqrt(d^2 + eps^2);
* ssim: 1 - SSIM with the Gaussian window (11, sigma 1.5) and zero 'same' padding of pytorch_ssim, which
  DuRN and MBN train with; C1 = 0.01^2, C2 = 0.03^2 on [0, 1] images;
* mbn: DuRN's mix used by the MBN paper, literally `-1.1 * SSIM + 0.75 * L1` (the spec's "1.1 x SSIM-loss
  + 0.75 x L1"; the same gradients as 1.1 * (1 - SSIM) + 0.75 * L1, and the logged values match DuRN's);
* vgg54: the perceptual loss of SRGAN and PCARN (thesis Eq. 2.5): squared L2 distance of VGG-19 relu5_4
  features (`restorekit.train.vgg`), averaged per sample over channels and positions; it needs the
  user's VGG-19 weights file (`{type: vgg54, weights: vgg19.pth}`), or `random_init: true` in tests;
* likelihood: DL-Net's "naive likelihood" term L = ‖D_i(x̂_i) − y_i‖² (spec 1.6/1.8), D_i the differentiable
  forward operator of sample i's degradation record and y_i its degraded input, per sample the mean over
  D(x̂)'s elements (the normalisation of l2, so that `L_rec + λ L` is `[{type: l2}, {type: likelihood,
  weight: λ}]` with the paper's λ = 1e2..1e5); it needs the batch's records, which the trainer then keeps;
* any weighted sum of these (`train.loss: [{type: l1, weight: 1}, {type: ssim, weight: 0.2}]`).

More terms plug in through `register_loss(name, fn)`: a function (pred, target, mask=None, **_) -> per-sample
loss (B,) (keyword arguments `records`, the batch's degradation records, and `lq`, its degraded input, come
too; a function with `needs_records = True` makes the trainer keep the records), or, for a loss that holds a network, a `NetworkLoss` subclass (built once per run from the
term's `weights` / `random_init`, moved to the batch's device).
`UncertaintyWeighting` is Kendall et al.'s multi-task weighting, one learned log-variance per level.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ConfigError, ModelError
from restorekit.train.vgg import load_vgg19, random_vgg19

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


def likelihood(pred, target, mask=None, records=None, lq=None, **_):
    """Naive likelihood: per sample, mean of (D_i(pred_i) - lq_i)^2 over D's output, D_i = records[i].forward.
    0 where the prediction explains the observation (pred = target for a noiseless, unquantised degradation)."""
    if records is None or lq is None or any(r is None for r in records):
        raise ConfigError("loss likelihood needs each sample's degradation record and degraded input: train on "
                          "clean images with a degradation spec (not a paired folder, not MoA)")
    if len(records) != pred.shape[0]:
        raise ValueError(f"loss likelihood: {len(records)} records for a batch of {pred.shape[0]}")
    values = []
    for i, record in enumerate(records):
        out = record.forward(pred[i : i + 1])
        y = lq[i : i + 1].to(out.dtype)
        if out.shape != y.shape:
            raise ValueError(f"loss likelihood: the record makes {tuple(out.shape[1:])} from the output, the input "
                             f"is {tuple(y.shape[1:])}")
        values.append(((out - y) ** 2).flatten(1).mean(1))
    return torch.cat(values)


likelihood.needs_records = True  # type: ignore[attr-defined]


class NetworkLoss(nn.Module):
    """A loss term that holds a frozen network (perceptual losses). Registered as the class; `Loss` builds
    one per run from the term's `weights` file, or, for tests only, a seeded random network."""

    name = "network"
    needs = "a weights file"

    def __init__(self, weights: str | None = None, random_init: bool = False):
        super().__init__()
        if weights and random_init:
            raise ConfigError(f"loss {self.name}: give either weights or random_init (tests only), not both")
        if not weights and not random_init:
            raise ConfigError(f"loss {self.name} needs {self.needs}: {{type: {self.name}, weights: FILE}} "
                              "(see docs/training.md, Losses)")


class VGGLoss(NetworkLoss):
    """SRGAN's VGG54 / PCARN's content loss: mean squared difference of relu5_4 features, per sample.

    The thesis averages over W*H (Eq. 2.5); the reference code's nn.MSELoss also averages over channels,
    which is what we do so that its weight 1.0 against 5e-3 x GAN carries over. Masked pixels (cutout)
    take the target's values before the network sees them, so their error is not counted."""

    name = "vgg54"
    needs = "a VGG-19 weights file with torchvision's names (features.N.weight), which cannot be downloaded here"

    def __init__(self, weights: str | None = None, random_init: bool = False):
        super().__init__(weights, random_init)
        try:
            self.features = load_vgg19(weights) if weights else random_vgg19()
        except ModelError as err:
            raise ModelError(f"loss vgg54: {err} (it needs {self.needs}; docs/training.md, Losses)") from None

    def forward(self, pred, target, mask=None, **_):
        if mask is not None:
            pred = torch.where(mask.bool(), pred, target)
        with torch.no_grad():
            wanted = self.features(target)
        return ((self.features(pred) - wanted) ** 2).flatten(1).mean(1)


# THE loss registry: config validation (`train.loss`, stage losses) and `Loss` both read it.
LOSSES: dict[str, PerSampleLoss | type[NetworkLoss]] = {
    "l1": l1, "l2": l2, "charbonnier": charbonnier, "ssim": ssim, "mbn": mbn, "vgg54": VGGLoss,
    "likelihood": likelihood}
BUILT_IN = tuple(LOSSES)


def holds_network(name: str) -> bool:
    """Whether loss `name` is a NetworkLoss (takes `weights` / `random_init`)."""
    fn = LOSSES.get(name)
    return isinstance(fn, type) and issubclass(fn, NetworkLoss)


def register_loss(name: str, fn: PerSampleLoss | type[NetworkLoss]) -> None:
    """Add a loss term usable in configs (perceptual, adversarial, ...): fn(pred, target, mask=None) -> (B,)."""
    if name in LOSSES:
        raise ValueError(f"loss {name!r} exists already")
    LOSSES[name] = fn


def unregister_loss(name: str) -> None:
    """Remove a registered loss (tests; the built-in ones stay)."""
    if name in BUILT_IN:
        raise ValueError(f"loss {name!r} is built in")
    LOSSES.pop(name, None)


def loss_names() -> list[str]:
    return list(LOSSES)


class Loss:
    """Weighted sum of terms; call -> per-sample loss (B,)."""

    def __init__(self, terms: list, charbonnier_eps: float = 1e-3):
        self.terms = []
        for term in terms:
            term = term if isinstance(term, dict) else term.to_plain()
            kind = term["type"]
            if kind not in LOSSES:
                raise ValueError(f"unknown loss {kind!r}")
            fn = LOSSES[kind]
            if holds_network(kind):
                fn = fn(term.get("weights"), term.get("random_init", False))
            self.terms.append((fn, float(term.get("weight", 1.0))))
        self.eps = charbonnier_eps

    @property
    def needs_records(self) -> bool:
        """Whether a term reads the batch's degradation records (the naive likelihood)."""
        return any(getattr(fn, "needs_records", False) for fn, _ in self.terms)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                 **batch) -> torch.Tensor:
        """`batch`: what a term may read besides pred/target/mask: `records`, `lq` (the naive likelihood)."""
        pred, target = pred.float(), target.float()
        total = None
        for fn, weight in self.terms:
            if isinstance(fn, nn.Module):
                fn.to(pred.device)  # a no-op once there
            value = weight * fn(pred, target, mask, eps=self.eps, **batch)
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
