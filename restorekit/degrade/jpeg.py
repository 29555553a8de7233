"""JPEG compression at quality q, per image through Pillow (default) or OpenCV; the encoder is recorded.

Encoders differ at the same q (MATLAB's, used by RED-Net/AdaFM, is neither), so the encoder is a named
parameter and its library version goes into the record. Inputs are rounded to uint8 first and the
output is the decoded uint8 image: JPEG in a pipeline always returns 8-bit-quantised values. A
greyscale (1-channel) image is encoded as greyscale.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

import numpy as np
import PIL
import torch
from PIL import Image, features

from restorekit.degrade.operator import Extras, Level, Operator, register
from restorekit.degrade.params import Param
from restorekit.degrade.seeding import Context
from restorekit.errors import SpecError


def to_uint8_hwc(x: torch.Tensor, *, reverse_channels: bool = False) -> np.ndarray:
    """(B, C, H, W) float in [0, 1] -> contiguous (B, H, W, C) uint8, clamped and rounded half to even.

    The cast runs on the planar tensor and the interleaving as one strided copy per channel, about 2x
    faster here than a permuted `copy_` (this matters next to a ~0.13 ms codec call per patch).
    `reverse_channels` writes OpenCV's BGR order in the same copies instead of a `cvtColor` per image.
    """
    planar = x.detach().mul(255).clamp_(0, 255).round_().to("cpu", torch.uint8).numpy()
    batch, channels, height, width = planar.shape
    out = np.empty((batch, height, width, channels), dtype=np.uint8)
    for c in range(channels):
        out[..., c] = planar[:, channels - 1 - c if reverse_channels else c]
    return out


def from_uint8_hwc(images: np.ndarray, like: torch.Tensor, *, reverse_channels: bool = False) -> torch.Tensor:
    """The inverse of `to_uint8_hwc`: (B, H, W, C) uint8 -> (B, C, H, W) values k / 255 as `like`'s dtype."""
    batch, height, width, channels = images.shape
    planar = np.empty((batch, channels, height, width), dtype=np.uint8)
    for c in range(channels):
        planar[:, channels - 1 - c if reverse_channels else c] = images[..., c]
    return torch.from_numpy(planar).to(like.device, like.dtype).div_(255)


def pil_roundtrip(hwc: np.ndarray, quality: int) -> np.ndarray:
    """Pillow `Image.save(buf, 'JPEG', quality=q)` then decode (MBN's recipe); HxWxC uint8 in and out."""
    height, width, channels = hwc.shape
    image = Image.frombytes("L" if channels == 1 else "RGB", (width, height), np.ascontiguousarray(hwc))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue()), formats=("JPEG",)))
    return decoded[:, :, None] if decoded.ndim == 2 else decoded


def opencv_roundtrip(hwc: np.ndarray, quality: int, *, bgr: bool = False) -> np.ndarray:
    """OpenCV `imencode('.jpg', IMWRITE_JPEG_QUALITY=q)` then `imdecode`; HxWxC uint8 in and out.

    Colour images are RGB unless `bgr` says they are already in OpenCV's order (then so is the result).
    """
    cv2 = _import_cv2()
    colour = hwc.shape[2] == 3
    image = hwc[:, :, 0] if not colour else hwc if bgr else cv2.cvtColor(hwc, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise SpecError("jpeg:encoder=opencv: OpenCV failed to encode the image")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if not colour:
        return decoded[:, :, None]
    return decoded if bgr else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _import_cv2():
    try:
        import cv2
    except ImportError:
        raise SpecError(
            "jpeg:encoder=opencv needs OpenCV: pip install opencv-python-headless (or use encoder=pil)"
        ) from None
    return cv2


@functools.cache
def encoder_version(encoder: str) -> str:
    if encoder == "pil":
        return f"Pillow {PIL.__version__} (libjpeg {features.version('jpg')})"
    return f"OpenCV {_import_cv2().__version__}"


@register
class Jpeg(Operator):
    """JPEG compression artefacts at quality `quality`."""

    name = "jpeg"
    primary = "quality"
    summary = "JPEG compression"
    source = "MBN q∈[15, 50] (Pillow), Table 3 q=10; RED-Net q∈{10, 20}; AdaFM q∈{10..80}; Flickr {20, 10, 5}"
    params = (
        Param("quality", "int", "JPEG quality", low=1, high=100),
        Param("encoder", "str", "pil (Pillow, default) or opencv", default="pil", options=("pil", "opencv")),
    )

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        bgr = all(level["encoder"] == "opencv" for level in levels)  # an OpenCV-only batch is laid out BGR once
        images = to_uint8_hwc(x, reverse_channels=bgr)
        out = np.empty_like(images)
        for i, level in enumerate(levels):
            if level["encoder"] == "pil":
                out[i] = pil_roundtrip(images[i], level["quality"])
            else:
                out[i] = opencv_roundtrip(images[i], level["quality"], bgr=bgr)
        versions = {enc: encoder_version(enc) for enc in {lv["encoder"] for lv in levels}}
        tensor = from_uint8_hwc(out, x, reverse_channels=bgr)
        return tensor, [{"encoder_version": versions[lv["encoder"]]} for lv in levels]
