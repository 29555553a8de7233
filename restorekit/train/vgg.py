"""VGG-19 features up to relu5_4, for the perceptual loss (`vgg54` in train.losses).

Written here because torchvision (where VGG usually comes from) is not a dependency and does not import with
our torch. The layers and their indices are torchvision's `vgg19().features[:36]`, so a state dict saved
from torchvision's VGG-19 loads unchanged: keys `features.N.weight` / `features.N.bias` for the 16 convs
(N = 0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34); `classifier.*` keys, if the file has
them, are left out. The ImageNet weights cannot be downloaded here: the user supplies the file
(safetensors, or a weights-only .pth), read through `restorekit.zoo.read_weights` (never unpickled).

The layer is the spec's reading of the thesis's "i = j = 5" (relu5_4, SRGAN's VGG54), on ImageNet-normalised
inputs as torchvision's weights expect. The PCARN reference code differs on both counts: it takes
`features[:35]` (conv5_4, before its ReLU) on un-normalised [0, 1] images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from restorekit.errors import ModelError

# Channels of each conv, "M" a 2x2 max-pool: VGG-19 (configuration "E") through block 5.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_INIT_SEED = 0  # random_init (tests) builds the same network every time, so resumes stay exact


class VGG19Features(nn.Module):
    """[0, 1] RGB (or grey, repeated to RGB) -> relu5_4 features, ImageNet-normalised inputs, frozen."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(width, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                width = int(item)
        self.features = nn.Sequential(*layers)  # ends at relu5_4 (index 35)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features((x - self.mean) / self.std)


def load_vgg19(path: str | Path) -> VGG19Features:
    """VGG-19 features with the weights of a torchvision-named file; every conv must be there."""
    from restorekit.zoo import read_weights

    path = Path(path).expanduser()
    state = {k: v for k, v in read_weights(path).items() if not k.startswith("classifier.")}
    net = VGG19Features()
    expected = set(net.state_dict())
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ModelError(f"{path}: not torchvision VGG-19 weights (missing {missing[:3] or 'none'}, "
                         f"unexpected {extra[:3] or 'none'}); expected keys features.N.weight/bias")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{path}: not torchvision VGG-19 weights ({str(err).splitlines()[-1].strip()})") from None
    return net


def random_vgg19() -> VGG19Features:
    """A randomly initialised (seeded) VGG-19: for tests only, it measures nothing perceptual. torchvision's
    VGG init (Kaiming normal, fan-out, zero bias) keeps relu5_4 at a usable size; PyTorch's default conv
    init shrinks it about 1e-7-fold over 16 layers, and the loss would train nothing."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        net = VGG19Features()
        for conv in net.features:
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
        return net
