"""Tiled and self-ensembled inference (product issue: tiled equals untiled within 1/255), and `Restorer`'s
checks (strength, precision flags, task and level range, Y-channel models on colour photos)."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit import infer, ops
from restorekit.api import ModelChoice, Restorer, build_restorer
from restorekit.card import ModelCard
from restorekit.cli import main
from restorekit.data.augment import dihedral, inverse_dihedral
from restorekit.errors import ModelError, RestorekitError, TimedOut
from restorekit.infer import Deadline, run_ensemble, run_model, run_tiled, tiling_cost
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


# ---------------------------------------------------------------------------------------------------
# Issue 13, finding 7: tile settings are checked in one place (CLI, API, server)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile, overlap, message", [
    (-1, 32, "tile -1: use 0 (whole image) or at least 16 pixels (--tile)"),
    (1, 0, "tile 1: use 0 (whole image) or at least 16 pixels"),
    (7, 2, "tile 7: use 0"),
    (15, 4, "tile 15: use 0"),
    (0, -3, "tile overlap -3: must be 0 or more (--tile-overlap)"),
    (64, -1, "tile overlap -1: must be 0 or more"),
    (64, 64, "tile overlap 64 must be smaller than the tile 64 (--tile-overlap)"),
    (64, 100, "tile overlap 100 must be smaller than the tile 64"),
])
def test_impossible_tile_settings_are_refused_by_the_api_before_a_model_loads(tile, overlap, message):
    """Issue 13, finding 7: negative, tiny (1-15) and all-overlap tiles are one-line errors."""
    with pytest.raises(RestorekitError) as refused:
        Restorer("identity", device="cpu", tile=tile, tile_overlap=overlap)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(RestorekitError, match="tile"):
        build_restorer(ModelChoice("no-such-model"), tile=tile, tile_overlap=overlap)  # before the lookup


def test_usable_tile_settings_pass_and_an_overlap_over_half_a_tile_is_used_as_half():
    for tile, overlap, used in [(0, 0, 0), (0, 32, 0), (0, None, 0), (16, 0, 0), (16, 15, 8), (16, None, 8),
                                (32, None, 16), (512, None, 32), (512, 100, 100)]:
        assert Restorer("identity", device="cpu", tile=tile, tile_overlap=overlap).tile_overlap == used
    model = build("bicubic", scale=2)
    image = torch.rand(1, 40, 50)
    tiled = Restorer(model, device="cpu", tile=16, tile_overlap=12).restore(image)
    assert (tiled - run_model(model, image).clamp(0, 1)).abs().max() < 1e-5


def test_small_tiles_warn_with_the_estimated_slowdown_and_large_ones_do_not():
    """Issue 13, finding 7: 'tile 48 with overlap 32 recomputes ~Nx the pixels' (measured thresholds in
    restorekit/infer.py); whole-image models and tiling off never warn."""
    deep = build("adafm_net", channels=3, features=8, blocks=8)  # the bundled denoiser's 39 px context
    assert deep.info.receptive_field == 39
    with pytest.warns(UserWarning) as caught:
        restorer = Restorer(deep, device="cpu", tile=48, tile_overlap=32)
    assert len(caught) == 1 and restorer.tiling_warning == str(caught[0].message)
    assert restorer.tiling_warning == ("tile 48 with overlap 24 recomputes ~9.8x the pixels of an untiled run on "
                                       "large images (39 px of context around every tile); --tile 160 or more "
                                       "keeps it under 3x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for tile in (0, 160, 512):
            assert Restorer(deep, device="cpu", tile=tile).tiling_warning is None
        whole = build("adafm_net", features=8, blocks=1, norm="cin")
        assert Restorer(whole, device="cpu", tile=16, tile_overlap=8).tiling_warning is None


def test_the_slowdown_estimate_tracks_the_pixels_the_model_really_runs_on(monkeypatch):
    """The warning's number is tiling_cost; on a large image the pixels run_tiled feeds the model are
    close to it (a little below: border tiles have context on fewer sides)."""
    model = build("dncnn", depth=17, features=8)  # 17 px context, never run: run_model is counted only
    fed = []

    def count(model, image, *args, **kwargs):
        fed.append(image.shape[-2] * image.shape[-1])
        return image

    monkeypatch.setattr(infer, "run_model", count)
    for tile, overlap in [(64, 32), (128, 32), (256, 16)]:
        fed.clear()
        run_tiled(model, torch.zeros(1, 1024, 1024), tile, overlap)
        ratio = sum(fed) / 1024**2
        assert 0.85 * tiling_cost(tile, overlap, 17) < ratio <= tiling_cost(tile, overlap, 17)


def test_the_cli_refuses_a_bad_tile_before_any_file_and_warns_in_one_line(tmp_path, capsys):
    """Issue 13, finding 7: exit 2 with one line and no output for --tile 7 / negative overlap; a slow but
    valid setting runs with a one-line 'restorekit: warning: ...' (a real process: warnings are its output)."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(folder / "a.png")
    for options in (["--tile", "7"], ["--tile", "-1"], ["--tile-overlap", "-4"], ["--tile", "32", "--tile-overlap", "32"]):
        out = tmp_path / "out"
        assert main(["restore", str(folder), "-o", str(out), "--model", "identity", "--device", "cpu", *options]) == 2
        err = capsys.readouterr().err
        assert err.startswith("restorekit: error: tile") and err.count("\n") == 1 and not out.exists()
    run = subprocess.run([sys.executable, "-m", "restorekit", "restore", str(folder / "a.png"), "-o",
                          str(tmp_path / "b.png"), "--model", "bicubic", "--scale", "2", "--device", "cpu",
                          "--tile", "16", "--tile-overlap", "8"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and (tmp_path / "b.png").exists()
    assert run.stderr == ("restorekit: warning: tile 16 with overlap 8 recomputes ~4.0x the pixels of an untiled "
                          "run on large images (4 px of context around every tile); --tile 32 or more keeps it "
                          "under 3x\n")


# ---------------------------------------------------------------------------------------------------
# Issue 13, finding 1: a deadline stops long work between tiles (the web server's --timeout)
# ---------------------------------------------------------------------------------------------------


def test_a_deadline_stops_tiled_work_between_tiles(monkeypatch):
    model = build("bicubic", scale=2)
    image = torch.rand(1, 64, 64)
    with pytest.raises(TimedOut, match="took longer than the 5 s limit"):
        run_tiled(model, image, 16, 8, deadline=Deadline(5, time.monotonic() - 1))  # expired: nothing runs
    run_model = infer.run_model
    tiles = []

    def slow(*args, **kwargs):
        tiles.append(1)
        time.sleep(0.05)
        return run_model(*args, **kwargs)

    monkeypatch.setattr(infer, "run_model", slow)
    restorer = Restorer(model, device="cpu", tile=16, tile_overlap=8)
    with pytest.raises(TimedOut):
        restorer.restore(image, deadline=Deadline.after(0.2))  # 16 tiles x 0.05 s > 0.2 s
    assert 1 <= len(tiles) < 16
    tiles.clear()
    assert restorer.restore(image, deadline=Deadline.after(60)).shape == (1, 128, 128)
    assert len(tiles) == 16
