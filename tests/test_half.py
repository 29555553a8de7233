"""Half precision through the product's path. The per-architecture flags (every registered architecture x
its test configs, fp32 vs fp16/bf16 within a bound, refusal where False) are measured in
tests/test_model_contract.py::test_precision_flags_are_honest; here: `Restorer`'s precision path and the
installed (trained) zoo models on a natural image, since trained weights can overflow fp16 where random
ones do not.

Bounds (images in [0, 1]) as in the contract: fp16 (11 significant bits) within 1/255 max abs, bf16 (8
significant bits: its own rounding step just below 1.0 is 1/256) within 2/255, both with PSNR against
fp32 >= 45 dB. On the CPU, bf16 is autocast over fp32 weights with channels_last inputs (`infer.place`,
`infer.precision_context`); fp16 casts the weights and runs, about 90x slower than fp32 on a CPU without
fp16 kernels, so the zoo's fp16 check is marked slow.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from zoo_helpers import lively_adafm

from restorekit import infer
from restorekit.api import Restorer
from restorekit.errors import ModelError
from restorekit.models import build

BOUND = {"fp16": 1 / 255, "bf16": 2 / 255}
MIN_PSNR = 45.0

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


def _sample(channels: int) -> torch.Tensor:
    """A natural image crop (smooth areas and edges), not noise."""
    import numpy as np
    from skimage import data

    crop = torch.from_numpy(data.astronaut()[96:144, 200:264].astype(np.float32) / 255).permute(2, 0, 1)
    return crop[:channels].contiguous() if channels != 1 else crop.mean(0, keepdim=True)


def _difference(out: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    mse = float(((out - reference) ** 2).mean())
    return float((out - reference).abs().max()), (99.0 if mse == 0 else 10 * math.log10(1 / mse))


def _lively(**arguments):
    torch.manual_seed(0)
    model = build("adafm_net", **{"blocks": 2, "features": 16, "kernel_size": 3, **arguments})
    lively_adafm(model.module)
    return model


def test_the_bf16_path_of_restorer_is_cpu_autocast_over_fp32_weights():
    """Restorer places flagged models; on the CPU bf16 keeps fp32 weights and runs convolutions under
    autocast (so the output differs from fp32, by less than the bound), tiled as usual."""
    model = _lively()
    image = _sample(3)
    full = Restorer(copy.deepcopy(model), device="cpu", tile=32).restore(image, strength=0.5)
    restorer = Restorer(copy.deepcopy(model), device="cpu", precision="bf16", tile=32)
    assert restorer.model.dtype == torch.float32
    out = restorer.restore(image, strength=0.5)
    worst, psnr = _difference(out, full)
    assert 0 < worst <= BOUND["bf16"] and psnr >= MIN_PSNR, (worst * 255, psnr)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what precision_context switches on
        assert restorer.model.module.conv_first(image[None]).dtype == torch.bfloat16


def test_the_fp16_path_casts_the_weights():
    model = _lively(blocks=1, features=8)
    image = _sample(3)[:, :24, :32]
    full = Restorer(copy.deepcopy(model), device="cpu", tile=0).restore(image)
    restorer = Restorer(copy.deepcopy(model), device="cpu", precision="fp16", tile=0)
    assert restorer.model.dtype == torch.float16
    worst, psnr = _difference(restorer.restore(image), full)
    assert worst <= BOUND["fp16"] and psnr >= MIN_PSNR, (worst * 255, psnr)


def test_a_variant_that_failed_is_flagged_off_and_refused():
    """Conditional-IN AdaFM fails bf16 in the contract tests, so its flags are False and half precision is
    refused (by Restorer, and by infer.place for any caller) instead of silently running."""
    model = _lively(norm="cin")
    assert model.info.arguments["norm"] == "cin" and not model.info.bf16 and not model.info.fp16
    for precision in ("fp16", "bf16"):
        with pytest.raises(ModelError, match=f"not verified for {precision}"):
            Restorer(model, device="cpu", precision=precision)
    assert _lively().info.bf16 and _lively(norm="bn", adafm=False).info.bf16  # the other variants passed


def _installed() -> list[str]:
    from restorekit.zoo import entries

    return [e.card.name for e in entries() if e.weights.is_file()]


def _check_zoo(precision: str) -> None:
    from restorekit.zoo import load_model

    names = _installed()
    if not names:
        pytest.skip("no trained models installed in the zoo")
    checked = 0
    for name in names:
        model = load_model(name)
        if not model.info.supports(precision):
            continue
        image = _sample(model.info.in_channels or 3)
        conditions = {"strength": 1.0} if model.info.modulated else {}
        if "scale" in model.info.inputs:  # a multi-scale model at its largest scale (the SR slider's adapted end)
            conditions["scale"] = max(model.info.scales)
        reference = infer.run_model(model, image, **conditions).clamp(0, 1)
        low = infer.place(copy.deepcopy(model), torch.device("cpu"), precision)
        worst, psnr = _difference(infer.run_model(low, image, "cpu", precision, **conditions).clamp(0, 1), reference)
        assert worst <= BOUND[precision] and psnr >= MIN_PSNR, f"{name} {precision}: {worst * 255:.2f}/255, {psnr:.1f} dB"
        checked += 1
    if not checked:
        pytest.skip(f"no installed zoo model is flagged {precision}")


def test_installed_zoo_models_flagged_bf16_match_fp32():
    """Trained weights, natural image: the bundled AdaFM models at their adapted end."""
    _check_zoo("bf16")


@pytest.mark.slow
def test_installed_zoo_models_flagged_fp16_match_fp32():
    _check_zoo("fp16")
