"""RED-Net (Mao, Shen, Yang, "Image Restoration Using Very Deep Convolutional Encoder-Decoder Networks with
Symmetric Skip Connections", NIPS 2016; spec methods-dlnet-rednet-mbn-adafm.md section 2): n convolutions,
then n mirrored transposed convolutions, a conv feature added to its mirrored deconv output every
`skip_step` layers (then ReLU), and the input added to the output (the net learns the corruption).

One definition, pinned (field-conventions 3.7: reimplementations disagree on width, stride and ReLU placement):

* `depth` counts conv + deconv layers: RED10 = 5 + 5 without skips (and without the global residual,
  "without shortcuts"; `red10` presets both), RED20 = 10 + 10, RED30 = 15 + 15, skips every 2 layers.
* Width 64 (the paper's ablations hold it fixed at 64; the authors' released Caffe models use 128:
  `features=128` builds that), 3x3 kernels.
* `padding="valid"` (default): unpadded convs that each remove k-1 pixels and stride-1 transposed convs
  that add them back, the reading of "convs down-sample the content into a small abstraction, deconvs
  up-sample it back" with no pooling (RED30 maps a 50x50 patch to 20x20 at the bottleneck);
  `padding="same"` keeps every map at the input size.
* Skip pairing: the output of conv c_i (i = step, 2 step, ... < n) is added to the output of deconv
  d_{n-i}, the layer whose output has c_i's size; the sum goes through the ReLU (Eq. 3: max(0, X1 + X2),
  the deconv's own ReLU being this one). Every other conv and deconv is followed by a ReLU; the last
  deconv is linear (`final_relu` adds one) and the input is added to it (`global_residual`).
* `down`: 1-based conv indices with stride 2, their mirrored deconvs upsampling by 2 (Sec. 4.5's speed
  variants: conv1, conv5, conv9, conv5+9); each transposed conv is given its mirror's input size, so any
  image size works.
* `skips="residual"`: the Fig. 7 ablation, He et al.'s identity shortcuts around every `skip_step` layers
  instead of the symmetric ones (needs `padding="same"`, where the shapes agree).
* Tasks: one model per task family. `sr_scales` (e.g. (2, 3, 4)) makes an SR instance that takes the scale
  and MATLAB-bicubic-upscales its input first (blind SR on the upscaled image, Table 8); `mask_input` adds the
  mask of damaged pixels as an extra input channel (`mask` condition; the paper's text and scratch removal
  take no mask, which is the default).
* Initialisation: not stated (Caffe). PyTorch's default everywhere, except that with the global residual the
  last deconv starts at zero (`identity_init`, default on), so the untrained net is the identity: a 30-layer
  random residual starts several dB below its own input (measured: 26.1 dB at sigma 10 after 20 steps, the
  noisy input being 28.1 dB) and spends the CPU budget climbing back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from restorekit import ops
from restorekit.errors import ModelError
from restorekit.models import register_model

StateDict = dict[str, torch.Tensor]
PADDINGS = ("valid", "same")
SKIPS = ("symmetric", "residual", "none")


class REDNet(nn.Module):
    def __init__(self, channels: int = 1, depth: int = 30, features: int = 64, kernel: int = 3, skip_step: int = 2,
                 skips: str = "symmetric", padding: str = "valid", down: Sequence[int] = (),
                 global_residual: bool = True, final_relu: bool = False, sr_scales: Sequence[int] = (),
                 mask_input: bool = False, identity_init: bool = True) -> None:
        super().__init__()
        if depth < 2 or depth % 2:
            raise ValueError(f"depth counts conv + deconv layers: an even number >= 2, got {depth}")
        if padding not in PADDINGS or skips not in SKIPS:
            raise ValueError(f"padding must be one of {PADDINGS} and skips one of {SKIPS}")
        if skips == "residual" and (padding != "same" or down):
            raise ValueError("He-style residual shortcuts need padding='same' and no down-sampling (the shapes "
                             "of a block's input and output must agree)")
        n = depth // 2
        if any(not 1 <= d <= n for d in down):
            raise ValueError(f"down: conv indices in 1..{n}, got {list(down)}")
        self.n, self.kernel, self.skip_step, self.skips = n, kernel, skip_step, skips
        self.global_residual, self.final_relu = global_residual, final_relu
        self.sr_scales, self.mask_input = tuple(int(s) for s in sr_scales), mask_input
        pad = kernel // 2 if padding == "same" else 0
        strides = [2 if i + 1 in down else 1 for i in range(n)]
        self.min_size = 1  # the smallest input side every conv can take, walking back from a 1-px bottleneck
        for stride in reversed(strides):
            self.min_size = (self.min_size - 1) * stride + kernel - 2 * pad
        first = channels + (1 if mask_input else 0)
        self.convs = nn.ModuleList(
            nn.Conv2d(first if i == 0 else features, features, kernel, strides[i], pad) for i in range(n))
        # deconv d_j (j = 1..n) mirrors conv c_{n+1-j}: same stride, back to that conv's input size
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(features, channels if j == n else features, kernel, strides[n - j], pad)
            for j in range(1, n + 1))
        if identity_init and global_residual:
            nn.init.zeros_(self.deconvs[-1].weight)
            nn.init.zeros_(self.deconvs[-1].bias)

    def forward(self, x: torch.Tensor, scale: int = 1, mask: torch.Tensor | None = None) -> torch.Tensor:
        if int(scale) > 1:
            x = ops.imresize(x, int(scale))
        if min(x.shape[-2:]) < self.min_size:
            raise ModelError(f"this RED-Net needs images of at least {self.min_size} px per side (its unpadded "
                             f"convs and strides), got {x.shape[-2]}x{x.shape[-1]}")
        source = x
        if self.mask_input:
            x = torch.cat([x, mask.to(x.dtype).expand(x.shape[0], 1, *x.shape[-2:]) if mask is not None
                           else x.new_zeros(x.shape[0], 1, *x.shape[-2:])], dim=1)
        sizes, features = [x.shape[-2:]], [x]  # c_0 = the input
        layers = [*self.convs, *self.deconvs]
        block_input = x
        for index, layer in enumerate(layers, start=1):  # conv c_i is layer i, deconv d_j layer n + j
            if index <= self.n:
                x = layer(x)
            else:
                x = layer(x, output_size=list(sizes[2 * self.n - index]))
            if index == len(layers):
                break
            x = F.relu(x + self._skip(index, features, block_input))
            if self.skips == "residual" and self.skip_step and (index - 1) % self.skip_step == 0:
                block_input = x
            if index <= self.n:
                sizes.append(x.shape[-2:])
                features.append(x)
        if self.final_relu:
            x = F.relu(x)
        return source + x if self.global_residual else x

    def _skip(self, index: int, features: list[torch.Tensor], block_input: torch.Tensor) -> torch.Tensor | float:
        """What layer `index` adds before its ReLU. Symmetric: deconv d_j (index n + j) gets conv c_{n-j} when
        n - j is a positive multiple of the step. Residual (He et al.): the output of layer index - step, every
        step layers from layer 1 on."""
        step = self.skip_step
        if not step:
            return 0.0
        mirror = 2 * self.n - index
        if self.skips == "symmetric" and index > self.n and mirror > 0 and mirror % step == 0:
            return features[mirror]
        if self.skips == "residual" and index > 1 and (index - 1) % step == 0:
            return block_input
        return 0.0


def detect(state: StateDict) -> dict | None:
    """Our layout (`convs.{i}`, `deconvs.{j}`), else None. Skip placement, padding, strides and the global
    residual do not show in the tensors: they come from the model card (the zoo) or the builder's defaults."""
    convs = sorted(int(k.split(".")[1]) for k in state if k.startswith("convs.") and k.endswith(".weight"))
    deconvs = sorted(int(k.split(".")[1]) for k in state if k.startswith("deconvs.") and k.endswith(".weight"))
    if not convs or convs != list(range(len(convs))) or deconvs != convs:
        return None
    if set(state) - {f"{kind}.{i}.{p}" for kind in ("convs", "deconvs") for i in convs for p in ("weight", "bias")}:
        return None
    first, last = state["convs.0.weight"], state[f"deconvs.{len(deconvs) - 1}.weight"]
    channels = int(last.shape[1])
    return {"channels": channels, "depth": 2 * len(convs), "features": int(first.shape[0]),
            "kernel": int(first.shape[-1]), "mask_input": int(first.shape[1]) == channels + 1}


def _receptive_field(arguments: dict) -> int:
    """Input pixels of context each side: k // 2 per layer at that layer's stride, both halves, plus one
    stride of slack per down-sampling (the transposed conv's phase)."""
    n, half = arguments.get("depth", 30) // 2, arguments.get("kernel", 3) // 2
    down, jump, radius = set(arguments.get("down", ())), 1, 0
    for i in range(1, n + 1):
        radius += half * jump
        jump *= 2 if i in down else 1
    for i in range(n, 0, -1):  # the mirrored deconvs, coarsest first
        radius += half * jump + (jump if i in down else 0)
        jump //= 2 if i in down else 1
    return radius


def _resolve(arguments: dict) -> dict:
    sr_scales = tuple(int(s) for s in arguments.get("sr_scales", ()))
    inputs = (("scale",) if sr_scales else ()) + (("mask",) if arguments.get("mask_input") else ())
    field = _receptive_field(arguments)
    return {"in_channels": arguments.get("channels", 1), "inputs": inputs, "scales": sr_scales or (1,),
            # tiles start on the strided layers' sampling grid
            "size_multiple": 2 ** len(set(arguments.get("down", ()))),
            # the bicubic upscale first: the HR receptive field in LR pixels, plus the kernel's 2 taps
            "receptive_field": -(-field // min(sr_scales)) + 2 if sr_scales else field}


@register_model(
    "rednet", tasks=("denoise", "sr", "jpeg", "deblur", "inpaint"),
    summary="RED-Net (Mao et al. 2016): conv/deconv encoder-decoder with symmetric skips, one model per task family",
    in_channels=1, detect=detect, resolve=_resolve,
    test_configs=({"depth": 6, "features": 8},
                  {"depth": 8, "features": 8, "padding": "same", "down": (1,), "channels": 3},
                  {"depth": 4, "features": 4, "skip_step": 0, "global_residual": False},
                  {"depth": 6, "features": 4, "sr_scales": (2, 3)},
                  {"depth": 4, "features": 4, "mask_input": True, "channels": 3},
                  {"depth": 8, "features": 4, "padding": "same", "skips": "residual"}),
)
def rednet(channels: int = 1, depth: int = 30, features: int = 64, kernel: int = 3, skip_step: int = 2,
           skips: str = "symmetric", padding: str = "valid", down: Sequence[int] = (), global_residual: bool = True,
           final_relu: bool = False, sr_scales: Sequence[int] = (), mask_input: bool = False,
           identity_init: bool = True) -> REDNet:
    """RED30 by default; `rednet(depth=20)` RED20; RED10 is `rednet(depth=10, skip_step=0, global_residual=False)`."""
    return REDNet(channels, depth, features, kernel, skip_step, skips, padding, down, global_residual, final_relu,
                  sr_scales, mask_input, identity_init)
