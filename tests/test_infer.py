"""Tiled and self-ensembled inference (product issue: tiled equals untiled within 1/255), and `Restorer`'s
checks (strength, precision flags, task and level range, Y-channel models on colour photos)."""

from __future__ import annotations

import pytest
import torch

from restorekit import ops
from restorekit.api import Restorer
from restorekit.card import ModelCard
from restorekit.data.augment import dihedral, inverse_dihedral
from restorekit.errors import ModelError, RestorekitError
from restorekit.infer import run_ensemble, run_model, run_tiled
from restorekit.models import build, with_info


def test_tiled_equals_untiled_for_a_deep_model_on_700x500():
    torch.manual_seed(0)
    model = build("adafm_net", blocks=4, features=16, kernel_size=3)
    image = torch.rand(3, 500, 700)
    whole = run_model(model, image, strength=0.5)
    tiled = run_tiled(model, image, tile=128, overlap=32, strength=0.5)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1 / 255


def test_tiled_sr_output_has_the_scaled_size_and_matches():
    model = build("bicubic", scale=3)
    image = torch.rand(3, 150, 170)
    tiled = run_tiled(model, image, tile=64, overlap=16)
    assert tiled.shape == (3, 450, 510)
    assert (tiled - run_model(model, image)).abs().max() < 1e-5


def test_too_little_context_shows_seams_so_the_receptive_field_matters():
    torch.manual_seed(0)
    model = build("adafm_net", blocks=4, features=16)
    for p in model.module.parameters():  # make the model far from the identity so context matters
        p.data *= 10
    image = torch.rand(3, 200, 260)
    whole = run_model(model, image)
    blind = run_tiled(model, image, tile=64, overlap=0, context=0)
    assert (blind - whole).abs().max() > 1 / 255


def test_dihedral_inverse_and_ensemble_of_an_equivariant_op():
    x = torch.rand(1, 3, 5, 7)
    for k in range(8):
        assert torch.equal(inverse_dihedral(dihedral(x, k), k), x)
    assert len({tuple(dihedral(x, k).flatten()[:6].tolist()) for k in range(8)}) == 8
    # Bicubic upscaling is (up to float rounding) flip/rotation equivariant, so the ensemble changes nothing.
    model = build("bicubic", scale=2)
    ensembled = run_ensemble(lambda im: run_model(model, im), x[0])
    assert (ensembled - run_model(model, x[0])).abs().max() < 1e-5


def test_restorer_strength_and_precision_guard():
    restorer = Restorer(build("adafm_net", blocks=2, features=8), device="cpu", tile=32, tile_overlap=8)
    image = torch.rand(3, 50, 70)
    assert restorer.strength_for(None, 0.3) == 0.3
    assert restorer.strength_for(None, None) == 1.0  # the adapted end
    with pytest.raises(ModelError, match="no strength curve"):
        restorer.strength_for(45, None)
    with pytest.raises(ModelError, match="strength must be in"):
        restorer.restore(image, strength=1.5)
    out = restorer.restore(image, strength=0.5)
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    plain = Restorer(build("dncnn", depth=3, features=8), device="cpu")
    with pytest.raises(ModelError, match="no strength control"):
        plain.restore(image[:1], strength=0.5)
    unsafe = with_info(build("dncnn", depth=3, features=8), fp16=False, bf16=False)
    for precision in ("fp16", "bf16"):
        with pytest.raises(ModelError, match=f"not verified for {precision}"):
            Restorer(unsafe, device="cpu", precision=precision)
    with pytest.raises(ModelError, match="unknown precision"):
        Restorer(build("dncnn", depth=3, features=8), device="cpu", precision="fp8")


def test_restore_checks_the_task_and_the_level_range_before_running():
    """Issue 6: `.restore(image, task=..., level=...)` refuses a model made for another task or a level
    outside the card's range, instead of returning a silently wrong image."""
    model = build("dncnn", depth=3, features=8)
    model.card = ModelCard(name="tiny-dncnn", architecture="dncnn", arguments={"depth": 3, "features": 8},
                           task="denoise", levels=(15, 75))
    restorer = Restorer(model, device="cpu")
    image = torch.rand(1, 24, 30)
    assert restorer.restore(image, task="denoise", level=25).shape == image.shape
    with pytest.raises(ModelError, match="'denoise' model, not 'sr'"):
        restorer.restore(image, task="sr")
    with pytest.raises(ModelError, match="outside the range 15..75"):
        restorer.restore(image, task="denoise", level=90)
    with pytest.raises(RestorekitError, match="unknown task 'denoize'"):
        restorer.restore(image, task="denoize")


def test_a_y_channel_model_restores_the_luma_of_a_colour_photo_and_keeps_its_chroma():
    """DeJPEG/SR models trained on Y (the benchmarks' channel) work on colour photos as the field runs them:
    Y through the model, Cb/Cr kept (bicubic-upscaled for SR), back to RGB."""
    torch.manual_seed(0)
    model = build("dncnn", in_channels=1, depth=3, features=8)
    image = torch.rand(3, 40, 50)
    out = Restorer(model, device="cpu", tile=0).restore(image)
    assert out.shape == image.shape
    before, after = ops.rgb2ycbcr(image.double()), ops.rgb2ycbcr(out.double())
    expected_y = run_model(model, before[:1].float())
    inside = (out > 1e-4).all(0) & (out < 1 - 1e-4).all(0)  # where clamping to [0, 1] did not act
    assert (after[0] - expected_y[0].double())[inside].abs().max() < 1e-4
    assert (after[1:] - before[1:])[:, inside].abs().max() < 1e-4
