"""DL-Net (Guo et al., "Deep Likelihood Network for Image Restoration with Multiple Degradation Levels",
TIP 2021): the recursive likelihood module that adapts any restoration network to the known degradation of
each input (spec methods-dlnet-rednet-mbn-adafm.md, section 1).

A backbone f = h ∘ g is split at its last hidden feature map z (before that layer's activation); h is the
activation, the output layer and any term constant in z (a bicubic global skip). Given the degraded input y
and its degradation record (whose `forward` is the differentiable operator D(x) = (W x)↓t), the module
refines z0 = g(y) by K-1 unrolled Adam-like steps on F(z) = ‖D(h(z)) - y‖² and returns h(z_{K-1}). It adds
no parameters; K = 1 is exactly the backbone.

The split lives with each family, as a method `split(x, **conditions) -> (z0, h)` of its network
(`VDSR.split`, `IDN.split`, `DRRN.split`, `ContextAutoencoder.split`); `LikelihoodRefine` works with any
backbone that has one, or with `split=f`, f(backbone, y, **conditions) -> (z0, h) (a function of the
backbone, not a closure over it, so that deep copies refine with their own weights). A split that takes
`record` receives it (the autoencoder reads its hole mask from the record).

Records: the `record` call argument is one `Degradation` for the whole batch (evaluation: one image) or a
sequence of them, one per sample (training batches, `DegradationBatch`). F sums the per-sample terms; the
reference code's per-sample normalisation (MSE over known pixels) scales each sample's gradients by a
constant, which the Adam-like step cancels (up to the 1e-16 floor).

Precision: fp16/bf16 stay False. The 1e-16 floor underflows in fp16 (0/0 where the gradient vanishes) and
bf16 measures 5-12/255 off fp32 on the contract's random configs.

Where z sits (spec 1.3(b) leaves it open for SR): our released VDSR runs on the bicubic-upscaled image, so
its z is the 19th conv's output at HR size and h(z) = bicubic(y) + conv20(ReLU(z)); IDN's z is the last
distillation block's 1x1 compression before its LeakyReLU (64 maps at LR size) and h(z) = bicubic(y) +
transposed conv(LeakyReLU(z)); DRRN (bicubic-upscaled input, as in its paper) z is the last recursion's
sum before the output ReLU. The released VDSR and IDN weights load unchanged.

Registered models (one per backbone; the scale is fixed per instance, as the paper trains one DL-Net per
scale, and the record must describe that scale): `dlnet_vdsr`, `dlnet_idn`, `dlnet_drrn` (SR with blur:
record e.g. `blur:kind=gaussian,width=2.6+down:scale=2`) and `dlnet_autoencoder` (inpainting and
interpolation: a record of `inpaint:...` or `bernoulli:...`). Each takes the backbone's builder arguments
plus `steps` (K, default 5), `lr` (γ: 1e-3; the paper uses 1e-2 for interpolation) and `bias_correction`.

Weights: a DL-Net state dict is its backbone's under `backbone.`; `convert` turns a backbone file (a
released VDSR .mat, IDN .safetensors or our backbone's state) into it, which is how `model.init` starts a
DL-Net fine-tuning from the released references, and `detect` recognises only the prefixed form (a plain
backbone file is detected as the backbone, never as two architectures at once).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from restorekit.degrade.record import Degradation, DegradationBatch
from restorekit.errors import ModelError
from restorekit.models import Architecture, get_architecture, register_model

StateDict = dict[str, torch.Tensor]
# split(backbone, y, **conditions) -> (z0, h): e.g. the unbound `VDSR.split`
Split = Callable[..., tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]]
Record = Degradation | Sequence[Degradation]

PREFIX = "backbone."
BETAS = (0.9, 0.999)  # "all ADAM hyper-parameters except the learning rate kept at default" [P]
FLOOR = 1e-16  # sqrt(max(v_hat, 1e-16)), no +eps (Eq. 5 as printed)
BIAS_CORRECTIONS = ("printed", "adam")


def adam_step(grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, k: int, lr: float,
              bias_correction: str = "printed") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Δz, m, v) of update k (1-based). 'printed': Eq. 5's constant m/(1-β1), v/(1-β2) (spec 1.2: step 1 is
    -γ·sign(∇) as in Adam, step 2 with a constant gradient 1.344γ instead of γ); 'adam': 1-β^k."""
    b1, b2 = BETAS
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    k1, k2 = (1, 1) if bias_correction == "printed" else (k, k)
    m_hat, v_hat = m / (1 - b1**k1), v / (1 - b2**k2)
    return -lr * m_hat / torch.sqrt(torch.clamp(v_hat, min=FLOOR)), m, v


def degrade(record: Record, x: torch.Tensor) -> torch.Tensor:
    """D(x): one record for the whole batch, or one per sample (`DegradationBatch.forward`)."""
    if isinstance(record, Degradation):
        return record.forward(x)
    return DegradationBatch(record).forward(x)


def record_shape(record: Record) -> list[int] | None:
    """(C, H, W) of the clean image the record was made from (None when it does not say)."""
    first = record if isinstance(record, Degradation) else record[0]
    return first.shape


def fidelity(record: Record, x_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F = Σ_i ‖D_i(x̂_i) - y_i‖² (the 1/(2σ²) dropped, Eq. 4). Samples are independent, so one sum serves
    the batch. Padding the engine added (run_model's size multiple) lies outside the record's image and is
    left out: x̂ is cut to the record's clean size and y to what D makes of it."""
    shape = record_shape(record)
    full = x_hat.shape[-2:]
    if shape is not None:
        x_hat = x_hat[..., : shape[-2], : shape[-1]]
    out = degrade(record, x_hat)
    # the record's scale (clean size / degraded size) must be the model's (output size / input size)
    scales_agree = all(full[i] * out.shape[i - 2] == y.shape[i - 2] * x_hat.shape[i - 2] for i in (0, 1))
    if not scales_agree or out.shape[-2] > y.shape[-2] or out.shape[-1] > y.shape[-1] or out.shape[-3] != y.shape[-3]:
        raise ModelError(f"the degradation record makes a {tuple(out.shape[-3:])} image from the output, but the "
                         f"input is {tuple(y.shape[-3:])}: a record of another image or scale?")
    return ((out - y[..., : out.shape[-2], : out.shape[-1]]) ** 2).sum()


class LikelihoodRefine(nn.Module):
    """f(y) = h(z_{K-1}), z refined by K-1 Adam-like steps on ‖D(h(z)) - y‖² (spec 1.2; no parameters of its own).

    Training (module in train mode, gradients on): the inner gradients keep their graph (create_graph), so
    the loss on the output differentiates through them into g and h. Otherwise (eval, or under no_grad):
    the steps run under enable_grad with z detached, no graph kept, and the output follows the caller's
    grad mode."""

    def __init__(self, backbone: nn.Module, split: Split | None = None, steps: int = 5, lr: float = 1e-3,
                 bias_correction: str = "printed", split_arguments: dict[str, Any] | None = None) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps (K) must be >= 1, got {steps}")
        if bias_correction not in BIAS_CORRECTIONS:
            raise ValueError(f"bias_correction must be one of {BIAS_CORRECTIONS}, got {bias_correction!r}")
        split = split or getattr(type(backbone), "split", None)
        if split is None:
            raise ValueError(f"{type(backbone).__name__} has no split(x) -> (z, h): pass split=")
        self.backbone = backbone
        # split(backbone, y, **conditions): a plain function of the backbone, never a closure over it, so a
        # deep copy of this module (EMA, precision checks) refines with its own copy of the backbone
        self.split_function = split
        self.split_arguments = dict(split_arguments or {})
        self.steps, self.lr, self.bias_correction = int(steps), float(lr), bias_correction
        self._takes_record = "record" in inspect.signature(split).parameters

    @property
    def updates(self) -> int:
        """K - 1: the number of updates of z (K = 1 is the backbone)."""
        return self.steps - 1

    def split(self, y: torch.Tensor, record: Record | None, **conditions: Any):
        """(z0, h) of the backbone for this input (the record passed on to a split that takes it)."""
        if self._takes_record:
            conditions["record"] = record
        return self.split_function(self.backbone, y, **self.split_arguments, **conditions)

    def forward(self, y: torch.Tensor, record: Record | None = None, **conditions: Any) -> torch.Tensor:
        if record is None:
            raise ModelError("DL-Net needs the degradation record of its input (the `record` condition)")
        z, h = self.split(y, record, **conditions)
        if self.updates == 0:
            return h(z)
        train = self.training and torch.is_grad_enabled()
        with torch.enable_grad():
            if not train:
                z = z.detach().requires_grad_(True)
            m, v = torch.zeros_like(z), torch.zeros_like(z)
            for k in range(1, self.updates + 1):
                loss = fidelity(record, h(z), y)
                (grad,) = torch.autograd.grad(loss, z, create_graph=train)
                delta, m, v = adam_step(grad, m, v, k, self.lr, self.bias_correction)
                z = z + delta if train else (z + delta).detach().requires_grad_(True)
        return h(z if train else z.detach())


# ------------------------------------------------------------------------------------- registration


def _strip(state: StateDict) -> StateDict | None:
    if not state or not all(k.startswith(PREFIX) for k in state):
        return None
    return {k[len(PREFIX):]: v for k, v in state.items()}


def _detector(backbone: str) -> Callable[[StateDict], dict | None]:
    def detect(state: StateDict) -> dict | None:
        """The backbone's arguments from a DL-Net state dict (the backbone's under `backbone.`), else None."""
        inner = _strip(state)
        arch = get_architecture(backbone)
        return None if inner is None or arch.detect is None else arch.detect(inner)

    return detect


def _converter(backbone: str) -> Callable[[StateDict], StateDict]:
    def convert(state: StateDict) -> StateDict:
        """A DL-Net state dict unchanged; a backbone file (released layout or ours) -> ours under `backbone.`."""
        if _strip(state) is not None:
            return state
        arch = get_architecture(backbone)
        inner = arch.convert(state) if arch.convert else state
        return {PREFIX + k: v for k, v in inner.items()}

    return convert


def _resolver(backbone: str, default_scale: int = 1, **fixed: Any) -> Callable[[dict], dict]:
    """The backbone's per-instance fields, with the DL-Net ones (one scale, the record as input) on top;
    `default_scale` is the builder's default (a weights file without a card does not say its scale)."""
    def resolve(arguments: dict) -> dict:
        arch: Architecture = get_architecture(backbone)
        inner = {k: v for k, v in arguments.items() if k not in ("steps", "lr", "bias_correction")}
        if "scale" in arch.inputs:
            inner.pop("scale", None)
        resolved = arch.resolve(inner) if arch.resolve else {}
        scale = arguments.get("scale", default_scale)
        return {**resolved, "scales": (int(scale),), **fixed}

    return resolve


def _refine(backbone: nn.Module, steps: int, lr: float, bias_correction: str, **split_arguments: Any
            ) -> LikelihoodRefine:
    return LikelihoodRefine(backbone, None, steps, lr, bias_correction, split_arguments)


# Small, fast configurations: a larger γ than the paper's so that the record visibly moves a random model's
# output (the contract checks that each declared condition is used).
_DLNET_TEST = {"steps": 3, "lr": 0.05}
_SR_FIELDS = dict(tasks=("sr",), inputs=("record",), in_channels=1, tiling="whole")


@register_model(
    "dlnet_vdsr", summary="DL-Net on VDSR (released weights): SR with known blur, one scale", **_SR_FIELDS,
    detect=_detector("vdsr"), convert=_converter("vdsr"), resolve=_resolver("vdsr", default_scale=2, inputs=("record",)),
    test_configs=({"scale": 2, "depth": 3, "features": 8, **_DLNET_TEST},),
)
def dlnet_vdsr(scale: int = 2, depth: int = 20, features: int = 64, channels: int = 1, steps: int = 5,
               lr: float = 1e-3, bias_correction: str = "printed") -> LikelihoodRefine:
    """z at HR size (the released VDSR runs on the bicubic-upscaled image); the released file loads as is."""
    from restorekit.models.vdsr import VDSR

    return _refine(VDSR(depth, features, channels), steps, lr, bias_correction, scale=scale)


@register_model(
    "dlnet_idn", summary="DL-Net on IDN (released weights): SR with known blur, one scale", **_SR_FIELDS,
    detect=_detector("idn"), convert=_converter("idn"), resolve=_resolver("idn", default_scale=2, inputs=("record",)),
    test_configs=({"scale": 2, "features": 16, "blocks": 1, "distilled": 4, **_DLNET_TEST},),
)
def dlnet_idn(scale: int = 2, features: int = 64, blocks: int = 4, distilled: int = 16, groups: int = 4,
              channels: int = 1, steps: int = 5, lr: float = 1e-3, bias_correction: str = "printed"
              ) -> LikelihoodRefine:
    """z = the last block's compression before its LeakyReLU, at LR size (the paper's LR-feature design)."""
    from restorekit.models.idn import IDN

    return _refine(IDN(scale, features, blocks, distilled, groups, channels), steps, lr, bias_correction)


@register_model(
    "dlnet_drrn", summary="DL-Net on DRRN B1U9 (no released weights): SR with known blur, one scale",
    **_SR_FIELDS, detect=_detector("drrn"), convert=_converter("drrn"),
    resolve=_resolver("drrn", default_scale=2, inputs=("record",)),
    test_configs=({"scale": 3, "units": 2, "features": 8, **_DLNET_TEST},),
)
def dlnet_drrn(scale: int = 2, units: int = 9, features: int = 128, channels: int = 1, steps: int = 5,
               lr: float = 1e-3, bias_correction: str = "printed") -> LikelihoodRefine:
    from restorekit.models.drrn import DRRN

    return _refine(DRRN(units, features, channels), steps, lr, bias_correction, scale=scale)


@register_model(
    "dlnet_autoencoder", summary="DL-Net on the context-encoder autoencoder: 64x64 inpainting / interpolation",
    tasks=("inpaint", "interpolate"), inputs=("record",), tiling="whole",
    detect=_detector("context_autoencoder"), convert=_converter("context_autoencoder"),
    resolve=_resolver("context_autoencoder", inputs=("record",), tiling="whole"),
    test_configs=({"width": 4, **_DLNET_TEST},),
)
def dlnet_autoencoder(width: int = 64, steps: int = 5, lr: float = 1e-3, bias_correction: str = "printed"
                      ) -> LikelihoodRefine:
    """γ: 1e-3 for inpainting, 1e-2 for interpolation (the paper's Tables II-V)."""
    from restorekit.models.context_autoencoder import ContextAutoencoder

    return _refine(ContextAutoencoder(width), steps, lr, bias_correction)
