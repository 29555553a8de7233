"""`restorekit degrade`: images plus JSON sidecars that regenerate them exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restorekit.cli import main
from restorekit.degrade import Degradation, image_seed
from restorekit.io import read_image, write_image


@pytest.fixture
def clean_folder(tmp_path, astronaut, camera):
    folder = tmp_path / "clean"
    folder.mkdir()
    write_image(folder / "colour.png", astronaut[:, :64, :64])
    write_image(folder / "grey.png", camera[:, :48, :40])
    return folder


def test_writes_images_and_sidecars_that_replay_bit_exactly(clean_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["degrade", str(clean_folder), "-o", str(out), "--spec", "jpeg:quality=20", "--seed", "0"]) == 0
    for name in ("colour", "grey"):
        sidecar = json.loads((out / f"{name}.json").read_text())
        assert sidecar["image_seed"] == image_seed(0, f"{name}.png")
        record = Degradation.from_json((out / f"{name}.json").read_text())
        clean, _ = read_image(clean_folder / f"{name}.png")
        written, _ = read_image(out / f"{name}.png")
        assert torch.equal(written, record.replay(clean))  # 8-bit spec: PNG holds it exactly
    grey, _ = read_image(out / "grey.png")
    assert grey.shape == (1, 48, 40)


def test_npy_format_keeps_unclipped_float_noise_and_fixed_seed_mode_is_kair(clean_folder, tmp_path, capsys):
    out = tmp_path / "npy"
    args = ["degrade", str(clean_folder / "colour.png"), "-o", str(out), "--spec", "noise:sigma=25"]
    assert main([*args, "--seed", "0", "--seed-mode", "fixed", "--format", "npy"]) == 0
    noisy = np.load(out / "colour.npy")
    clean, _ = read_image(clean_folder / "colour.png")
    hwc = clean.permute(1, 2, 0).numpy().copy()
    np.random.seed(0)
    hwc += np.random.normal(0, 25 / 255.0, hwc.shape)
    assert np.array_equal(noisy, hwc.transpose(2, 0, 1))
    assert main([*args, "-o", str(tmp_path / "png")]) == 0
    assert "not on uint8 levels" in capsys.readouterr().err  # PNG of float noise is flagged


def test_versions_and_overwrite(clean_folder, tmp_path):
    out = tmp_path / "shdd"
    args = ["degrade", str(clean_folder / "colour.png"), "-o", str(out), "--spec", "shdd:level=easy", "--versions", "3"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"colour_{v}{ext}" for v in range(3)
                                                           for ext in (".json", ".png", "_map.png"))
    images = [read_image(out / f"colour_{v}.png")[0] for v in range(3)]
    assert not torch.equal(images[0], images[1])
    # SHDD's per-pixel ground truth (issue 18 item 5): the map's values index the sidecar's region types
    sidecar = json.loads((out / "colour_0.json").read_text())
    region_map = (read_image(out / "colour_0_map.png")[0][0] * 255).round().long()
    assert sidecar["region_map"] == "colour_0_map.png"
    for region in sidecar["degradation"]["regions"]:
        top, left, bottom, right = region["box"]
        assert (region_map[top:bottom, left:right] == sidecar["region_types"].index(region["type"])).all()
    assert main(args) == 2  # exists: refuses without --overwrite
    assert main([*args, "--overwrite"]) == 0


def test_bad_spec_and_missing_input_exit_with_one_line(clean_folder, tmp_path, capsys):
    assert main(["degrade", str(clean_folder), "-o", str(tmp_path / "x"), "--spec", "jpeg:quality=0"]) == 2
    assert "quality=0 is out of range" in capsys.readouterr().err
    assert main(["degrade", str(tmp_path / "nowhere"), "-o", str(tmp_path / "y"), "--spec", "noise:sigma=5"]) == 2
    assert "no such dataset folder" in capsys.readouterr().err
    assert main(["degrade", str(clean_folder), "-o", str(tmp_path / "z"), "--spec", "down:scale=3"]) == 2
    assert "modcrop first" in capsys.readouterr().err
    assert main(["degrade", str(clean_folder), "-o", str(tmp_path / "z"), "--spec", "down:scale=3", "--modcrop", "3"]) == 0
    assert read_image(tmp_path / "z" / "grey.png")[0].shape == (1, 16, 13)  # 48x40 -> 48x39 -> /3


def test_a_bad_file_names_itself_and_leaves_nothing_written(clean_folder, tmp_path, capsys):
    """All or nothing: colour.png (64x64) and grey.png (48x40) take x4, odd.png (50x50), read last,
    does not. The error line names it once, and neither OUTDIR nor a staging folder remains."""
    from restorekit.io import write_image as write

    write(clean_folder / "odd.png", torch.rand(3, 50, 50))  # sorted after colour.png and grey.png
    out = tmp_path / "made" / "by_the_run"
    assert main(["degrade", str(clean_folder), "-o", str(out), "--spec", "down:scale=4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("restorekit: error: ") and str(clean_folder / "odd.png") in err and "not divisible by 4" in err
    assert err.count("odd.png") == 1
    assert not (tmp_path / "made").exists()  # the folders the run created are gone again


def test_failure_keeps_existing_outputs_and_removes_the_staging_folder(clean_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["degrade", str(clean_folder), "-o", str(out), "--spec", "noise:sigma=5"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (clean_folder / "zz_broken.png").write_bytes(b"not a png")
    assert main(["degrade", str(clean_folder), "-o", str(out), "--spec", "noise:sigma=50", "--overwrite"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing replaced, no .restorekit-degrade-*


def test_existing_outputs_are_refused_before_anything_is_written(clean_folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "grey.json").write_text("{}")  # the second input's sidecar is in the way
    assert main(["degrade", str(clean_folder), "-o", str(out), "--spec", "noise:sigma=5"]) == 2
    assert "grey.json: exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["grey.json"]  # colour.png was not written first


def test_crop_to_matches_eval_and_quiet_prints_no_image_lines(tmp_path, astronaut, capsys):
    """--crop-to takes the top-left WxH (portrait: HxW) before --modcrop, as `restorekit eval --crop-to`."""
    from restorekit.io import write_image as write

    clean = tmp_path / "clean"
    clean.mkdir()
    write(clean / "landscape.png", astronaut[:, :70, :90])
    write(clean / "portrait.png", astronaut[:, :90, :70])
    out = tmp_path / "lr"
    args = ["degrade", str(clean), "-o", str(out), "--spec", "down:scale=4", "--crop-to", "80x60", "--modcrop", "4", "--quiet"]
    assert main(args) == 0
    assert capsys.readouterr().err == ""
    assert read_image(out / "landscape.png")[0].shape == (3, 15, 20)  # 60x80 -> /4
    assert read_image(out / "portrait.png")[0].shape == (3, 20, 15)
    assert json.loads((out / "portrait.json").read_text())["crop_to"] == "80x60"
