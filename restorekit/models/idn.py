"""IDN (Hui, Wang, Gao, "Fast and Accurate Single Image Super-Resolution via Information Distillation
Network", CVPR 2018).

Y channel, one model per scale. Feature extraction (two 3x3 convs), four distillation blocks (an
enhancement unit whose 2nd and 5th convs are grouped by 4 and whose third conv's output is split:
16 channels join the block input, 48 continue; then a 1x1 compression), and a 17x17 transposed conv at
stride = scale, added to the MATLAB-bicubic-upscaled input. Every activation is LeakyReLU(0.05).

Released weights: Zheng222/IDN-Caffe @ 482c601 `test/caffemodel/IDN_x{2,3,4}.caffemodel` (no license
stated), blobs stored unchanged under the Caffe layer names, which are also ours (`conv1`, `conv3_1`,
`down1`, `upsample`, ...): no conversion is needed.

Alignment (the fact in the reference-weights README): Caffe's transposed conv at padding 8 yields
(H - 1) * scale + 1 rows, and the released test script adds it to the bicubic image shifted by
(scale - 1) pixels. Here the transposed conv runs at padding 8 - (scale - 1) and is cut to scale * H:
the same sum on the script's rows, extended to the full image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from restorekit import ops
from restorekit.errors import ModelError
from restorekit.models import register_model

StateDict = dict[str, torch.Tensor]
SLOPE = 0.05
KERNEL = 17


def _conv(cin: int, cout: int, kernel: int = 3, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, SLOPE)


def _chain(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for conv in convs:
        x = _act(conv(x))
    return x


class DistillationBlock(nn.Module):
    """Enhancement unit (six convs, the 2nd and 5th grouped) + 1x1 compression."""

    def __init__(self, features: int, distilled: int, groups: int) -> None:
        super().__init__()
        d, s = features // 4, distilled
        self.distilled = s
        self.units = nn.ModuleList([
            _conv(features, features - d), _conv(features - d, features // 2, groups=groups),
            _conv(features // 2, features),
            _conv(features - s, features), _conv(features, features - d, groups=groups),
            _conv(features - d, features + s),
        ])
        self.down = _conv(features + s, features, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _act(self.pre_activation(x))

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The 1x1 compression's output before its LeakyReLU (DL-Net's z when this is the last block)."""
        t = _chain(self.units[:3], x)
        kept = torch.cat([x, t[:, : self.distilled]], dim=1)  # the distilled channels join the block input
        t = _chain(self.units[3:], t[:, self.distilled:])
        return self.down(t + kept)


class IDN(nn.Module):
    def __init__(self, scale: int, features: int = 64, blocks: int = 4, distilled: int = 16, groups: int = 4,
                 channels: int = 1) -> None:
        super().__init__()
        self.scale = int(scale)
        self.conv1, self.conv2 = _conv(channels, features), _conv(features, features)
        self.blocks = nn.ModuleList(DistillationBlock(features, distilled, groups) for _ in range(blocks))
        self.upsample = nn.ConvTranspose2d(features, channels, KERNEL, stride=self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, h = self.split(x)
        return h(z)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """DL-Net's split (restorekit.models.dlnet), also the plain forward's two halves: z = the last block's
        compression before its LeakyReLU (LR size); h(z) = bicubic(x) + transposed conv(LeakyReLU(z))."""
        height, width = x.shape[-2:]
        t = _act(self.conv2(_act(self.conv1(x))))
        for block in self.blocks[:-1]:
            t = block(t)
        z = self.blocks[-1].pre_activation(t) if len(self.blocks) else t
        base = ops.imresize(x, self.scale)
        pad = KERNEL // 2 - (self.scale - 1)

        def h(z: torch.Tensor) -> torch.Tensor:
            t = _act(z) if len(self.blocks) else z
            up = F.conv_transpose2d(t, self.upsample.weight, self.upsample.bias, stride=self.scale, padding=pad)
            return base + up[..., : height * self.scale, : width * self.scale]

        return z, h


# Caffe layer names <-> our module paths: conv{3..}_{1..6} -> blocks.{b}.units.{u}, down{b+1} -> blocks.{b}.down.
def _caffe_name(ours: str) -> str:
    parts = ours.split(".")
    if parts[0] != "blocks":
        return ours
    block = int(parts[1])
    if parts[2] == "down":
        return f"down{block + 1}.{parts[3]}"
    return f"conv{block + 3}_{int(parts[3]) + 1}.{parts[4]}"


def _blocks(state: StateDict) -> int:
    return sum(1 for k in state if k.startswith("down") and k.endswith(".weight"))


def _caffe_names(state: StateDict) -> StateDict:
    """Our state dict under the Caffe names (a Caffe-named one unchanged)."""
    return {_caffe_name(k): v for k, v in state.items()} if "blocks.0.down.weight" in state else state


def detect(state: StateDict) -> dict | None:
    """Builder arguments (all but the scale, which the files do not record) from Caffe-named IDN
    tensors or ours, else None."""
    state = _caffe_names(state)
    needed = ("conv1.weight", "conv2.weight", "conv3_1.weight", "conv3_3.weight", "down1.weight", "upsample.weight")
    if not all(k in state for k in needed):
        return None
    blocks = _blocks(state)
    features = int(state["conv2.weight"].shape[0])
    up = state["upsample.weight"]
    if up.shape[-1] != KERNEL:
        raise ModelError(f"an IDN file whose transposed conv is {up.shape[-1]}x{up.shape[-1]}, not 17x17: "
                         "restorekit only loads the released IDN layout")
    return {"features": features, "blocks": blocks,
            "distilled": int(state["down1.weight"].shape[1]) - features,
            "groups": (features - features // 4) // int(state["conv3_2.weight"].shape[1]),
            "channels": int(state["conv1.weight"].shape[1])}


def convert(state: StateDict) -> StateDict:
    """Caffe names (`conv3_1.weight`, `down1.bias`) -> our module paths (ours unchanged)."""
    if "blocks.0.down.weight" in state:
        return state
    ours = {}
    blocks = _blocks(state)
    for name in IDN(2, blocks=blocks).state_dict():
        ours[name] = state[_caffe_name(name)]
    return ours


@register_model(
    "idn", tasks=("sr",), summary="IDN (Hui et al. 2018): information distillation network, Y channel, one scale",
    scales=(2, 3, 4), in_channels=1, receptive_field=29, detect=detect, convert=convert,
    # Measured on the released weights, 32x32 random image vs fp32: fp16 0.50/255 (x3), 0.59/255 (x4);
    # bf16 4.25/255 and 4.78/255, over the 2/255 bar.
    fp16=True,
    # LR pixels of context: 2 + 6 per block 3x3 convs, the 17x17 transposed conv's 1, the bicubic taps' 2.
    resolve=lambda a: {"scales": (int(a["scale"]),) if a.get("scale") else (2, 3, 4),
                       "in_channels": a.get("channels", 1), "receptive_field": 5 + 6 * a.get("blocks", 4)},
    test_configs=({"scale": 2, "features": 16, "blocks": 1, "distilled": 4},
                  {"scale": 3, "features": 16, "blocks": 2, "distilled": 4}),
)
def idn(scale: int | None = None, features: int = 64, blocks: int = 4, distilled: int = 16, groups: int = 4,
        channels: int = 1) -> IDN:
    """scale: 2, 3 or 4. The released files do not record it: pass it when loading one (`scale=3`)."""
    if scale is None:
        raise ModelError("IDN weights are made for one scale and the files do not record it: pass the scale "
                         "(eval --scale S, load_model(path, scale=S))")
    return IDN(scale, features, blocks, distilled, groups, channels)
