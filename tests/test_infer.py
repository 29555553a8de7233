"""Tiled and self-ensembled inference (product issue: tiled equals untiled within 1/255)."""

from __future__ import annotations

import torch

from restorekit.infer import dihedral, run_ensemble, run_model, run_tiled
from restorekit.models import create_model


def test_tiled_equals_untiled_for_a_deep_model_on_700x500():
    torch.manual_seed(0)
    model = create_model("adafm_net", blocks=4, features=16, kernel_size=3).eval()
    image = torch.rand(3, 500, 700)
    whole = run_model(model, image)
    tiled = run_tiled(model, image, tile=128, overlap=32)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1 / 255


def test_tiled_sr_output_has_the_scaled_size_and_matches():
    model = create_model("bicubic", scale=3)
    image = torch.rand(3, 150, 170)
    tiled = run_tiled(model, image, tile=64, overlap=16)
    assert tiled.shape == (3, 450, 510)
    assert (tiled - run_model(model, image)).abs().max() < 1e-5


def test_too_little_context_shows_seams_so_the_receptive_field_matters():
    torch.manual_seed(0)
    model = create_model("adafm_net", blocks=4, features=16).eval()
    for p in model.parameters():  # make the model far from the identity so context matters
        p.data *= 10
    image = torch.rand(3, 200, 260)
    whole = run_model(model, image)
    blind = run_tiled(model, image, tile=64, overlap=0, context=0)
    assert (blind - whole).abs().max() > 1 / 255


def test_dihedral_inverse_and_ensemble_of_an_equivariant_op():
    x = torch.rand(1, 3, 5, 7)
    for k in range(8):
        assert torch.equal(dihedral(dihedral(x, k), k, inverse=True), x)
    assert len({tuple(dihedral(x, k).flatten()[:6].tolist()) for k in range(8)}) == 8
    # Bicubic upscaling is (up to float rounding) flip/rotation equivariant, so the ensemble changes nothing.
    model = create_model("bicubic", scale=2)
    ensembled = run_ensemble(lambda im: run_model(model, im), x[0])
    assert (ensembled - run_model(model, x[0])).abs().max() < 1e-5


def test_restorer_strength_and_half_precision_guard():
    import pytest

    from restorekit.errors import ModelError
    from restorekit.infer import Restorer

    restorer = Restorer(create_model("adafm_net", blocks=2, features=8), device="cpu", tile=32, tile_overlap=8)
    image = torch.rand(3, 50, 70)
    assert restorer.strength_for(None, 0.3) == 0.3
    with pytest.raises(ModelError, match="no strength curve"):
        restorer.strength_for(45, None)
    out = restorer.restore(image, strength=0.5)
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    plain = Restorer(create_model("dncnn", depth=3, features=8), device="cpu")
    with pytest.raises(ModelError, match="no strength control"):
        plain.restore(image[:1], strength=0.5)
    unsafe = create_model("dncnn", depth=3, features=8)
    unsafe.info.supports_half = False
    with pytest.raises(ModelError, match="not verified for fp16"):
        Restorer(unsafe, precision="fp16")


def test_restore_checks_the_task_and_the_level_range_before_running():
    """Issue 6: `.restore(image, task=..., level=...)` refuses a model made for another task or a level
    outside the card's range, instead of returning a silently wrong image."""
    import pytest

    from restorekit.errors import ModelError, RestorekitError
    from restorekit.infer import Restorer

    model = create_model("dncnn", depth=3, features=8)
    model.card = {"task": "denoise", "levels": [15, 75]}
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
    from restorekit import ops
    from restorekit.infer import Restorer

    torch.manual_seed(0)
    model = create_model("dncnn", in_channels=1, depth=3, features=8)
    image = torch.rand(3, 40, 50)
    out = Restorer(model, device="cpu", tile=0).restore(image)
    assert out.shape == image.shape
    before, after = ops.rgb2ycbcr(image.double()), ops.rgb2ycbcr(out.double())
    expected_y = run_model(model, before[:1].float())
    inside = (out > 1e-4).all(0) & (out < 1 - 1e-4).all(0)  # where clamping to [0, 1] did not act
    assert (after[0] - expected_y[0].double())[inside].abs().max() < 1e-4
    assert (after[1:] - before[1:])[:, inside].abs().max() < 1e-4
