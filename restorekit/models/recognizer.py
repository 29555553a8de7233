"""Distortion recogniser (thesis ch. 6, spec methods-thesis.md 5.2; issue 18 item 2): which distortion, how strong,
and where, for every pixel.

The thesis classifies whole images with ImageNet-pretrained VGG-16 / ResNet-101 and detects regions with SSD300.
Neither pretrained base can be had here (no downloads; torchvision does not import with the CPU torch), so the
backbones are written here and trained from scratch (`pretrained=` in the recogniser's training config takes a
user's file), and ONE fully-convolutional network does both jobs, documented as our design:

    stem: 3x3 conv (full resolution: salt & pepper and quantisation live in single pixels), BN, ReLU
    4 stages, each halving the resolution (strides 2, 4, 8, 16):
        backbone "resnet": BasicBlocks (3x3 conv-BN-ReLU-3x3 conv-BN + shortcut, ReLU), ResNet's layout
        backbone "vgg":    2x2 max-pool then 3x3 conv-BN-ReLU layers, VGG's layout
    head: 1x1 convs to class logits at strides 4, 8 and 16, summed coarse-to-fine (an FPN-lite segmentation
          head), bilinearly up-sampled to the input size

It returns per-pixel logits over `classes` (25 for Flickr-Distortion: `identity` + 8 types x 3 levels, the order
of `restorekit.recognition.CLASSES`). Whole-image classification averages the pixels' probabilities; detection
turns the per-pixel type map into connected regions and their boxes (`restorekit.recognition`): the thesis's
"segmentation-to-boxes" alternative to an SSD head, which needs no anchors and gives the level per region too.
BatchNorm runs in eval mode at inference, so the output depends on the image only; the strided grid makes tiles
differ from the whole image, hence tiling "whole".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.models import register_model

BACKBONES = ("resnet", "vgg")
STAGE_STRIDES = (2, 4, 8, 16)
HEAD_STAGES = (1, 2, 3)  # the stages (strides 4, 8, 16) the head reads


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet's basic block; a strided 1x1 projection on the shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.first, self.second = conv_bn(cin, cout, stride), conv_bn(cout, cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.second(F.relu(self.first(x))) + self.shortcut(x))


def resnet_stage(cin: int, cout: int, depth: int) -> nn.Sequential:
    return nn.Sequential(*(BasicBlock(cin if i == 0 else cout, cout, 2 if i == 0 else 1) for i in range(depth)))


def vgg_stage(cin: int, cout: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(2)]
    for i in range(2 * depth):  # a VGG stage of 2 x depth convs (the ResNet stage's conv count)
        layers += [*conv_bn(cin if i == 0 else cout, cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DistortionRecognizer(nn.Module):
    def __init__(self, backbone: str = "resnet", widths: tuple[int, ...] = (32, 48, 64, 96),
                 depths: tuple[int, ...] = (1, 2, 2, 2), stem: int = 16, classes: int = 25, channels: int = 3) -> None:
        super().__init__()
        if backbone not in BACKBONES or len(widths) != len(STAGE_STRIDES) or len(depths) != len(widths):
            raise ValueError(f"backbone one of {BACKBONES}, {len(STAGE_STRIDES)} widths and depths")
        make = resnet_stage if backbone == "resnet" else vgg_stage
        self.stem = nn.Sequential(*conv_bn(channels, stem), nn.ReLU(inplace=True))
        ins = (stem, *widths[:-1])
        self.stages = nn.ModuleList(make(cin, cout, depth) for cin, cout, depth in zip(ins, widths, depths, strict=True))
        self.heads = nn.ModuleList(nn.Conv2d(widths[i], classes, 1) for i in HEAD_STAGES)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.stem(image - 0.5)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        logits = None
        for index, head in reversed(list(zip(HEAD_STAGES, self.heads, strict=True))):  # coarse to fine
            level = head(features[index])
            logits = level if logits is None else level + F.interpolate(
                logits, size=level.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


def detect(state: dict[str, torch.Tensor]) -> dict | None:
    """Our layout (`stem`, `stages.N`, `heads.N`): backbone, widths, depths and class count from the tensors."""
    if "stem.0.weight" not in state or "heads.0.weight" not in state:
        return None
    resnet = "stages.0.0.first.0.weight" in state
    widths, depths = [], []
    for index in range(len(STAGE_STRIDES)):
        prefix = f"stages.{index}."
        convs = sorted({k for k in state if k.startswith(prefix) and k.endswith("weight") and state[k].ndim == 4
                        and state[k].shape[-1] == 3})
        if not convs:
            return None
        widths.append(int(state[convs[0]].shape[0]))
        depths.append(len(convs) // 2)
    return {"backbone": "resnet" if resnet else "vgg", "widths": tuple(widths), "depths": tuple(depths),
            "stem": int(state["stem.0.weight"].shape[0]), "classes": int(state["heads.0.weight"].shape[0]),
            "channels": int(state["stem.0.weight"].shape[1])}


@register_model(
    "distortion_recognizer", tasks=("analyze",), outputs=("map",), tiling="whole", size_multiple=16, detect=detect,
    summary="distortion recogniser (thesis ch. 6): per-pixel type x level logits -> classification and boxes",
    resolve=lambda a: {"in_channels": a.get("channels", 3)},
    test_configs=({"widths": (8, 8, 16, 16), "depths": (1, 1, 1, 1), "stem": 8, "classes": 25},
                  {"backbone": "vgg", "widths": (8, 8, 8, 16), "depths": (1, 1, 1, 1), "stem": 4, "classes": 4}),
)
def distortion_recognizer(backbone: str = "resnet", widths: tuple[int, ...] = (32, 48, 64, 96),
                          depths: tuple[int, ...] = (1, 2, 2, 2), stem: int = 16, classes: int = 25,
                          channels: int = 3) -> DistortionRecognizer:
    return DistortionRecognizer(backbone, tuple(widths), tuple(depths), stem, classes, channels)
