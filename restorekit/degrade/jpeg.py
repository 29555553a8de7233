"""JPEG compression at quality q, per image through Pillow (default) or OpenCV; the encoder is recorded.

Encoders differ at the same q (MATLAB's, used by RED-Net/AdaFM, is neither), so the encoder is a named
parameter and its library version goes into the record. Inputs are rounded to uint8 first and the
output is the decoded uint8 image: JPEG in a pipeline always returns 8-bit-quantised values. A
greyscale (1-channel) image is encoded as greyscale.
"""

from __future__ import annotations

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


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) float in [0, 1] -> contiguous (B, H, W, C) uint8, clamped and rounded.

    The cast and the interleaving happen in one `copy_` pass (the batch-side cost matters next to a
    ~0.2 ms codec call per patch).
    """
    scaled = x.detach().mul(255).clamp_(0, 255).round_()
    b, c, h, w = x.shape
    out = torch.empty((b, h, w, c), dtype=torch.uint8, device=x.device)
    return out.copy_(scaled.permute(0, 2, 3, 1)).cpu().numpy()


def pil_roundtrip(hwc: np.ndarray, quality: int) -> np.ndarray:
    """Pillow `Image.save(buf, 'JPEG', quality=q)` then decode (MBN's recipe); HxWxC uint8 in and out."""
    image = Image.fromarray(hwc[:, :, 0]) if hwc.shape[2] == 1 else Image.fromarray(hwc)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    return decoded[:, :, None] if decoded.ndim == 2 else decoded


def opencv_roundtrip(hwc: np.ndarray, quality: int) -> np.ndarray:
    """OpenCV `imencode('.jpg', IMWRITE_JPEG_QUALITY=q)` then `imdecode`; RGB HxWxC uint8 in and out."""
    cv2 = _import_cv2()
    image = hwc[:, :, 0] if hwc.shape[2] == 1 else cv2.cvtColor(hwc, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise SpecError("jpeg:encoder=opencv: OpenCV failed to encode the image")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return decoded[:, :, None] if decoded.ndim == 2 else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _import_cv2():
    try:
        import cv2  # noqa: PLC0415 - optional dependency, only for encoder=opencv
    except ImportError:
        raise SpecError(
            "jpeg:encoder=opencv needs OpenCV: pip install opencv-python-headless (or use encoder=pil)"
        ) from None
    return cv2


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
        images = to_uint8_hwc(x)
        out = np.empty_like(images)
        for i, level in enumerate(levels):
            roundtrip = pil_roundtrip if level["encoder"] == "pil" else opencv_roundtrip
            out[i] = roundtrip(images[i], level["quality"])
        tensor = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        tensor.copy_(torch.from_numpy(out).to(x.device).permute(0, 3, 1, 2)).div_(255)
        versions = {enc: encoder_version(enc) for enc in {lv["encoder"] for lv in levels}}
        return tensor, [{"encoder_version": versions[lv["encoder"]]} for lv in levels]
