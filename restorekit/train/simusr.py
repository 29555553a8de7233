"""SimUSR (thesis ch. 5, spec 4.2): super-resolution trained from LR images only.

The trainer already builds SimUSR's pseudo pairs: a folder of LR images as the clean folder with
`levels: ["down:scale={scale}"]` gives (son, father) = (MATLAB-bicubic downscale of an LR crop, the crop);
see configs/simusr/. What is left is the optional pre-processing of noisy LR images: BM3D, as the thesis
does for NTIRE 2020's real-world LR images (and for ZSSR, for fairness).
"""

from __future__ import annotations

import torch

from restorekit.errors import RestorekitError

DENOISERS = ("bm3d",)
BM3D_MISSING = ("BM3D needs the optional package 'bm3d' (pip install 'restorekit[simusr]'; its license allows "
                "non-commercial use only); or denoise with a zoo model: restorekit restore DIR -o OUT --task denoise")


def bm3d_denoise(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """BM3D of a CHW float image in [0, 1] at noise level `sigma` (0-255 scale); colour images through
    bm3d_rgb (YCbCr-like opponent transform, as the BM3D authors' CBM3D). Returns CHW float32, clamped."""
    try:
        import bm3d
    except ImportError:
        raise RestorekitError(BM3D_MISSING) from None
    if sigma <= 0:
        raise RestorekitError(f"--sigma must be > 0 (the LR images' noise std on the 0-255 scale), got {sigma:g}")
    array = image.detach().to(torch.float64).cpu().permute(1, 2, 0).numpy()
    if image.shape[0] == 3:
        out = bm3d.bm3d_rgb(array, sigma / 255)
    else:
        out = bm3d.bm3d(array[..., 0], sigma / 255)[..., None]
    return torch.from_numpy(out).permute(2, 0, 1).clamp(0, 1).float().contiguous()
