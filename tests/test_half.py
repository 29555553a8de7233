"""`supports_half` is a promise: every architecture (and installed zoo model) flagged True must give
fp16 and bf16 outputs close to fp32. spandrel's rule: assume False until a test like this passes.

Tolerances (images in [0, 1]): fp16 (10-bit mantissa) within 1/255 max abs, i.e. at most one 8-bit
level; bf16 (7-bit mantissa: the output's own rounding step near 1.0 is already 1/256) within 3/255.
Both also need PSNR against fp32 >= 45 dB, so a few outliers cannot hide a systematically worse result.

On CPU, torch 2.13 runs fp16 and bf16 convolutions (checked here); on a CUDA machine the same
comparisons also run on the GPU, where fp16 overflow in real kernels is the usual failure.
"""

from __future__ import annotations

import copy

import pytest
import torch

from restorekit.infer import Restorer, model_info, run_model
from restorekit.models import create_model, list_models
from test_zoo_cli import lively_adafm

_ADAFM = {"blocks": 2, "features": 16, "kernel_size": 3}
# Small instances; every option that changes the computation (norm layers, built-in bicubic) gets one.
VARIANTS = {
    "dncnn": [{"in_channels": 3, "depth": 6, "features": 16}],
    "adafm_net": [_ADAFM, {**_ADAFM, "norm": "cin"}, {**_ADAFM, "norm": "bn"}, {**_ADAFM, "scale": 2}],
    "bicubic": [{"scale": 3}],
}
TOLERANCE = {torch.float16: 1 / 255, torch.bfloat16: 3 / 255}
MIN_PSNR = 45.0
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


def _build(name: str, variant: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **VARIANTS.get(name, [{}])[variant]).eval()
    return lively_adafm(model) if name == "adafm_net" else model


def _flagged() -> list:
    """(name, variant) for every registered architecture whose flag says half precision is safe."""
    cases = []
    for name in list_models():
        for variant, kwargs in enumerate(VARIANTS.get(name, [{}])):
            if model_info(_build(name, variant)).supports_half:
                cases.append(pytest.param(name, variant, id=f"{name}{kwargs}".replace(" ", "")))
    return cases


def _sample(channels: int) -> torch.Tensor:
    """A natural image crop (smooth areas and edges), not noise: what the flag is about."""
    import numpy as np
    from skimage import data

    crop = torch.from_numpy(data.astronaut()[96:144, 200:264].astype(np.float32) / 255).permute(2, 0, 1)
    return crop[:channels].contiguous()


@torch.no_grad()
def _compare(model: torch.nn.Module, dtype: torch.dtype, device: str) -> tuple[float, float]:
    """(max abs difference, PSNR) of the model in `dtype` against fp32, both clamped to [0, 1]."""
    x = _sample(model_info(model).in_channels or 3)[None]
    reference = copy.deepcopy(model).to(device)(x.to(device)).float().clamp(0, 1).cpu()
    half = copy.deepcopy(model).to(device=device, dtype=dtype)
    out = half(x.to(device=device, dtype=dtype)).float().clamp(0, 1).cpu()  # input in dtype too: param-less models
    mse = float(((out - reference) ** 2).mean())
    return float((out - reference).abs().max()), (99.0 if mse == 0 else float(10 * torch.log10(torch.tensor(1 / mse))))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name,variant", _flagged())
def test_flagged_architectures_match_fp32(name, variant, dtype, device):
    worst, psnr = _compare(_build(name, variant), dtype, device)
    assert worst <= TOLERANCE[dtype], f"{name} in {dtype}: max abs {worst * 255:.2f}/255; set supports_half=False"
    assert psnr >= MIN_PSNR, f"{name} in {dtype}: {psnr:.1f} dB vs fp32; set supports_half=False"


def test_the_half_path_of_restorer_runs_in_that_precision():
    """Restorer casts flagged models; its tiled bf16 output stays within the bf16 tolerance of fp32."""
    model = _build("adafm_net")
    image = _sample(3)
    full = Restorer(copy.deepcopy(model), device="cpu", tile=32).restore(image)
    restorer = Restorer(copy.deepcopy(model), device="cpu", precision="bf16", tile=32)
    assert next(restorer.model.parameters()).dtype == torch.bfloat16
    assert (restorer.restore(image) - full).abs().max() <= TOLERANCE[torch.bfloat16]


def _installed_half_cards() -> list[dict]:
    from restorekit.zoo import weights_dir, zoo_cards

    return [c for c in zoo_cards() if (weights_dir() / c.get("file", "")).is_file()]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_installed_zoo_models_flagged_half_match_fp32(dtype):
    """Trained weights can overflow fp16 where random ones do not: check every installed model too."""
    cards = _installed_half_cards()
    if not cards:
        pytest.skip("no trained models installed in the zoo yet")
    for card in cards:
        model = Restorer(card["name"], device="cpu").model
        if not model_info(model).supports_half:
            continue
        x = _sample(model_info(model).in_channels or 3)
        reference = run_model(model, x).clamp(0, 1)
        out = run_model(copy.deepcopy(model).to(dtype), x).clamp(0, 1)
        assert (out - reference).abs().max() <= TOLERANCE[dtype], card["name"]


def test_a_variant_that_failed_is_flagged_off_and_refused():
    """Conditional-IN AdaFM failed bf16 above, so its flag is False and Restorer refuses half precision."""
    from restorekit.errors import ModelError

    model = _build("adafm_net", 1)
    assert model.info.arguments["norm"] == "cin" and not model.info.supports_half
    with pytest.raises(ModelError, match="not verified for bf16"):
        Restorer(model, device="cpu", precision="bf16")
