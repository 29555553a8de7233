"""The context-encoder autoencoder of On-Demand Learning (Gao & Grauman, ICCV 2017) as DL-Net adapts it for
64x64 inpainting and pixel interpolation (spec methods-dlnet-rednet-mbn-adafm.md 1.3(a); field-conventions
3.6 and 3.8).

Encoder: four 4x4 stride-2 convs (64-128-256-512 at width 64), each followed by batch norm and LeakyReLU 0.2;
a channel-wise fully connected layer (each channel its own 16->16 map over the 4x4 positions, with bias, no
mixing across channels); decoder: four 4x4 stride-2 transposed convs back to 3 channels, batch norm + ReLU
after the first three, Tanh at the end. Convs followed by batch norm have no bias (On-Demand's code zeroes
them anyway). Init: MSRA for the convs, N(0, 1/16) for the channel-wise layer (the paper's std is not given).
Weights: 5,511,168 conv + 131,072 channel-wise (the paper's "~2.9M" counts the encoder and FC only: spec ⚠).

Conventions here:
- Images stay in restorekit's [0, 1]: the network sees 2x - 1 and its Tanh output t is returned as (t + 1)/2,
  i.e. the paper's [-1, 1] network exactly, with l2 on [-1, 1] = 4 x l2 on [0, 1].
- Holes are filled with the ImageNet mean colour (On-Demand's (117, 104, 123)/255, `degrade.masks.MEAN_COLOUR`)
  inside the model, whatever fill the degradation used, when the model knows where they are: the `mask`
  condition (restorekit's convention, 1 = missing / to restore, like `restore --mask`) or, in DL-Net's split,
  the degradation record. Without either the image is taken as it comes.
- Sizes: the channel-wise layer works on 4x4 blocks of the bottleneck, so a 64x64 input is the paper's
  network; other sizes are padded (replicate) to multiples of 64 here and processed as 64x64 cells that
  share convolutional context, the output cut back. Not tileable (`tiling: whole`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.degrade.masks import MEAN_COLOUR
from restorekit.degrade.record import Degradation
from restorekit.models import register_model

StateDict = dict[str, torch.Tensor]
SLOPE = 0.2
CELL = 4  # bottleneck positions per side of one 64x64 cell
MULTIPLE = 64


class ChannelwiseFC(nn.Module):
    """Each channel maps its 4x4 = 16 positions to 16 positions on its own (a 16x16 matrix + bias per channel)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        n = CELL * CELL
        self.weight = nn.Parameter(torch.randn(channels, n, n) / n**0.5)
        self.bias = nn.Parameter(torch.zeros(channels, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        cells = x.view(b, c, h // CELL, CELL, w // CELL, CELL).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // CELL, w // CELL, -1)
        out = torch.einsum("bcyxi,cio->bcyxo", cells, self.weight) + self.bias[None, :, None, None]
        return out.view(b, c, h // CELL, w // CELL, CELL, CELL).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(SLOPE))


def _up(cin: int, cout: int, activate: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU()) if activate else nn.Sequential(*layers)


def observed(record: Degradation | Sequence[Degradation], like: torch.Tensor) -> torch.Tensor:
    """(B|1, 1, H, W) DL-Net mask M (1 = observed) of a masking record: D(1) - D(0), since every masking
    operator is y = M x + (1 - M) fill. Positions beyond the record's image (run_model's padding) count as
    observed, so the padding is never refilled."""
    records = [record] if isinstance(record, Degradation) else list(record)
    shape = records[0].shape or list(like.shape[-3:])
    ones = like.new_ones((1, *shape))
    masks = torch.cat([(r.forward(ones) - r.forward(torch.zeros_like(ones)))[:, :1] for r in records])
    pad_h, pad_w = like.shape[-2] - masks.shape[-2], like.shape[-1] - masks.shape[-1]
    return F.pad(masks, (0, pad_w, 0, pad_h), value=1.0).round()


class ContextAutoencoder(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(_down(3, w), _down(w, 2 * w), _down(2 * w, 4 * w), _down(4 * w, 8 * w))
        self.bottleneck = ChannelwiseFC(8 * w)
        self.decoder = nn.Sequential(_up(8 * w, 4 * w), _up(4 * w, 2 * w), _up(2 * w, w, activate=False))
        self.output = nn.ConvTranspose2d(w, 3, 4, 2, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight)
        self.register_buffer("fill", torch.tensor(MEAN_COLOUR).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        z, h = self.split(x, mask)
        return h(z)

    def split(self, x: torch.Tensor, mask: torch.Tensor | None = None, record: Degradation | None = None
              ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """DL-Net's split (restorekit.models.dlnet), also the forward's two halves: z = the last hidden decoder
        layer's batch-norm output before its ReLU (width x H/2 x W/2); h(z) = Tanh(deconv(ReLU(z))) in [0, 1]."""
        keep = 1 - mask if mask is not None else observed(record, x) if record is not None else None
        if keep is not None:
            x = keep * x + (1 - keep) * self.fill.to(x.dtype)
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % MULTIPLE, 0, -height % MULTIPLE), mode="replicate")
        z = self.decoder(self.bottleneck(self.encoder(2 * x - 1)))
        return z, lambda z: (torch.tanh(self.output(F.relu(z))[..., :height, :width]) + 1) / 2


def detect(state: StateDict) -> dict | None:
    """Our layout (`encoder.*`, `bottleneck.weight` (C, 16, 16), `decoder.*`, `output.*`), else None."""
    fc = state.get("bottleneck.weight")
    if fc is None or fc.ndim != 3 or tuple(fc.shape[1:]) != (CELL * CELL,) * 2 or "encoder.0.0.weight" not in state:
        return None
    return {"width": int(state["encoder.0.0.weight"].shape[0])}


@register_model(
    "context_autoencoder", tasks=("inpaint", "interpolate"), inputs=("mask",), in_channels=3,
    summary="Context-encoder autoencoder (On-Demand Learning / DL-Net backbone): 64x64 inpainting, interpolation",
    tiling="whole", receptive_field=MULTIPLE, detect=detect,
    test_configs=({"width": 4},),
)
def context_autoencoder(width: int = 64) -> ContextAutoencoder:
    return ContextAutoencoder(width)
