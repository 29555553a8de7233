"""`restorekit eval --levels`: one JSON, a markdown table and a PNG plot of PSNR vs level for several models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit import evaluation
from restorekit.cli import main
from restorekit.models import create_model
from restorekit.train.trainer import save_final


@pytest.fixture
def folder(tmp_path, camera):
    out = tmp_path / "imgs"
    out.mkdir()
    array = (camera[0].numpy() * 255).round().astype(np.uint8)
    for i, (y, x) in enumerate([(100, 120), (250, 200), (300, 40)]):
        Image.fromarray(array[y:y + 64, x:x + 72]).save(out / f"{i}.png")
    return out


@pytest.fixture
def trained(tmp_path):
    """A carded weights file as `restorekit train` writes it (random weights: the numbers are not the point)."""
    torch.manual_seed(0)
    model = create_model("dncnn", in_channels=1, depth=3, features=8)
    card = {"architecture": "dncnn", "arguments": {"in_channels": 1, "depth": 3, "features": 8}, "task": "denoise"}
    save_final(tmp_path / "mine", model, card)
    return tmp_path / "mine" / "final.safetensors"


def test_level_grid_writes_json_markdown_and_png_for_several_models(tmp_path, folder, trained):
    out = tmp_path / "report" / "grid.json"
    assert main(["eval", "--model", "identity", "--model", str(trained), "--dataset", str(folder),
                 "--task", "denoise", "--levels", "10,30,50,70", "--json", str(out)]) == 0
    grid = json.loads(out.read_text())
    assert grid["x_axis"] == "level" and grid["x"] == ["10", "30", "50", "70"]
    assert grid["models"] == ["identity", "mine"]
    identity = [row["psnr"] for row in grid["results"]["identity"]]
    assert identity == sorted(identity, reverse=True)  # more noise, lower PSNR
    assert 27.5 < identity[0] < 30  # sigma 10: 28.1 dB, a little more where quantising clips dark pixels
    assert all(len(row["images"]) == 3 for rows in grid["results"].values() for row in rows)
    assert grid["protocol"]["seed_mode"] == "fixed" and grid["protocol"]["y_channel"] is False

    markdown = (tmp_path / "report" / "grid.md").read_text()
    assert "| model \\ level | 10 | 30 | 50 | 70 |" in markdown
    assert f"| identity | {identity[0]:.2f} | {identity[1]:.2f} |" in markdown and "| mine |" in markdown
    png = tmp_path / "report" / "grid.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.size[0] > 400 and image.size[1] > 300


def test_grid_numbers_equal_single_level_runs(tmp_path, folder, trained):
    grid_json, single_json = tmp_path / "g.json", tmp_path / "s.json"
    assert main(["eval", "--model", str(trained), "--model", "identity", "--dataset", str(folder), "--task", "denoise",
                 "--levels", "25", "--json", str(grid_json), "--plot", str(tmp_path / "p.png")]) == 0
    assert main(["eval", "--model", str(trained), "--dataset", str(folder), "--task", "denoise", "--level", "25",
                 "--json", str(single_json)]) == 0
    grid, single = json.loads(grid_json.read_text()), json.loads(single_json.read_text())
    assert grid["results"]["mine"][0]["psnr"] == pytest.approx(single["psnr"], abs=1e-9)
    assert (tmp_path / "p.png").is_file()


def test_grid_over_degradation_specs_and_over_sr_scales(tmp_path, folder):
    out = tmp_path / "specs.json"
    assert main(["eval", "--model", "identity", "--dataset", str(folder), "--task", "restore",
                 "--degrade", "noise:sigma=5", "--degrade", "blur:width=2", "--json", str(out)]) == 0
    grid = json.loads(out.read_text())
    assert grid["x_axis"] == "degradation" and grid["x"] == ["noise:sigma=5", "blur:width=2"]
    assert grid["protocol"]["seed_mode"] == "name"
    assert (tmp_path / "specs.png").is_file() and (tmp_path / "specs.md").is_file()

    sr = tmp_path / "sr.json"
    assert main(["eval", "--model", "bicubic", "--dataset", str(folder), "--task", "sr", "--levels", "2,3,4",
                 "--json", str(sr)]) == 0
    grid = json.loads(sr.read_text())
    psnr = [row["psnr"] for row in grid["results"]["bicubic"]]
    assert grid["x_axis"] == "scale" and grid["x"] == ["x2", "x3", "x4"] and psnr == sorted(psnr, reverse=True)
    # the SR border crop is the scale (x3.5: 4), so it changes along the axis: each row records its own, the grid
    # only what every row shares, and the table names it per column
    assert [row["protocol"]["crop_border"] for row in grid["results"]["bicubic"]] == [2, 3, 4]
    assert "crop_border" not in grid["protocol"] and grid["protocol"]["y_channel"] is True
    assert "crop_border by column: 2, 3, 4" in (tmp_path / "sr.md").read_text()


def test_grid_points_keep_the_protocol_and_seed():
    base = evaluation.default_setup("denoise", seed=7, seed_mode="fixed")
    points = evaluation.grid_points(base, [15, 25])
    assert [p.setup.degradation_spec() for p in points] == ["noise:sigma=15", "noise:sigma=25"]
    assert all(p.setup.seed == 7 and p.setup.protocol == base.protocol for p in points)
    sr = evaluation.grid_points(evaluation.default_setup("sr", scale=2), [3])
    assert sr[0].setup.scale == 3 and sr[0].setup.protocol.crop_border == 3
    assert evaluation.parse_levels("10, 30 50") == [10, 30, 50]


@pytest.mark.parametrize("args,expected", [
    (["--levels", "ten"], "--levels 'ten'"),
    (["--levels", "10,20", "--level", "10"], "--level and a grid"),
    (["--model", "bicubic"], "need --levels or --degrade"),
])
def test_grid_argument_errors_are_one_line(folder, args, expected, capsys):
    assert main(["eval", "--model", "identity", "--dataset", str(folder), "--task", "denoise", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def _pairs(root, camera):
    array = (camera[0].numpy() * 255).round().astype(np.uint8)[:40, :48]
    for side, image in (("clean", array), ("degraded", array[::-1].copy())):
        (root / side).mkdir(parents=True)
        Image.fromarray(image).save(root / side / "0.png")
    return root


def test_several_models_on_a_paired_dataset_share_one_point_the_given_files(tmp_path, camera, trained):
    """issue 13, finding 6: pairs need no --levels/--degrade to compare models; the x point is the given files."""
    pairs = _pairs(tmp_path / "pairs", camera)
    out = tmp_path / "grid.json"
    assert main(["eval", "--model", "identity", "--model", str(trained), "--dataset", str(pairs), "--task", "denoise",
                 "--json", str(out)]) == 0
    grid = json.loads(out.read_text())
    assert grid["x"] == ["given (paired files)"] and grid["x_axis"] == "degradation" and grid["unpaired"] == []
    assert grid["models"] == ["identity", "mine"] and grid["protocol"]["seed"] is None
    assert [row["spec"] for rows in grid["results"].values() for row in rows] == ["given (paired files)"] * 2
    assert all(row["level"] is None for rows in grid["results"].values() for row in rows)


def test_levels_on_a_paired_dataset_are_refused(tmp_path, camera, capsys):
    """issue 13, finding 6: --levels would synthesise inputs; a paired set's are given."""
    pairs = _pairs(tmp_path / "pairs", camera)
    assert main(["eval", "--model", "identity", "--dataset", str(pairs), "--task", "denoise", "--levels", "10,20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "paired dataset" in err[0] and "--levels" in err[0], err


def test_grid_rows_become_card_results_whose_commands_reproduce_them(tmp_path, folder, trained):
    """Result.from_grid (publish scripts): one card result per level, its single-level command giving the same PSNR."""
    from restorekit.card import Result

    out = tmp_path / "grid.json"
    assert main(["eval", "--model", str(trained), "--dataset", str(folder), "--task", "denoise", "--levels", "15,40",
                 "--json", str(out)]) == 0
    grid = json.loads(out.read_text())
    results = Result.from_grid(grid, "mine_zoo")
    assert [(r.level, r.psnr, r.n_images) for r in results] == [
        (row["level"], round(row["psnr"], 3), 3) for row in grid["results"]["mine"]]
    assert results[1].protocol["degradation"] == "noise:sigma=40" and results[1].dataset == folder.name
    args = results[1].command.split()[1:]
    assert args[:5] == ["eval", "--model", "mine_zoo", "--dataset", folder.name] and "--level" in args
    args[2], args[4] = str(trained), str(folder)
    assert main([*args, "--json", str(tmp_path / "one.json")]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["psnr"] == pytest.approx(grid["results"]["mine"][1]["psnr"])


def test_an_sr_scale_grid_becomes_card_results_at_each_scale_whose_commands_reproduce_them(tmp_path, folder):
    """`eval --task sr --levels 2,3` (RED-Net's blind SR card): the x axis is the scale, so each card result is at
    `--scale S` (for SR `--level` is DL-Net's blur width), and the grid's crop is in its command."""
    from restorekit.card import Result

    out = tmp_path / "grid.json"
    assert main(["eval", "--model", "bicubic", "--dataset", str(folder), "--task", "sr", "--levels", "2,3",
                 "--crop-to", "60x48", "--json", str(out)]) == 0
    grid = json.loads(out.read_text())
    results = Result.from_grid(grid, "bicubic")
    assert [(r.scale, r.level) for r in results] == [(2, None), (3, None)]
    args = results[1].command.split()[1:]
    assert "--level" not in args and args[args.index("--scale") + 1] == "3" and "60x48" in args
    args[4] = str(folder)
    assert main([*args, "--json", str(tmp_path / "one.json")]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["psnr"] == pytest.approx(grid["results"]["bicubic"][1]["psnr"])


def test_a_degrade_grid_becomes_card_results_whose_commands_name_each_rows_spec(tmp_path, folder, trained):
    """An `eval --degrade A --degrade B` grid (RED-Net's text removal at font 10 and 20): each card result's
    command carries its own --degrade, and reruns to the same PSNR."""
    import shlex

    from restorekit.card import Result

    out = tmp_path / "grid.json"
    assert main(["eval", "--model", str(trained), "--dataset", str(folder), "--task", "denoise", "--degrade",
                 "noise:sigma=15", "--degrade", "noise:sigma=40", "--json", str(out)]) == 0
    grid = json.loads(out.read_text())
    results = Result.from_grid(grid, "mine_zoo")
    assert [r.protocol["degradation"] for r in results] == ["noise:sigma=15", "noise:sigma=40"]
    args = shlex.split(results[1].command)[1:]
    assert args[-2:] == ["--degrade", "noise:sigma=40"] and "--level" not in args
    args[2], args[4] = str(trained), str(folder)
    assert main([*args, "--json", str(tmp_path / "one.json")]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["psnr"] == pytest.approx(grid["results"]["mine"][1]["psnr"])


def test_a_grid_seeded_otherwise_than_the_single_default_says_so_in_its_card_commands(tmp_path, folder, trained):
    """A level grid seeded by image name (`--seed-mode name`; a single `eval --level` seeds 'fixed'): each card
    command carries the seeding, so it reruns to the same PSNR on random noise."""
    import shlex

    from restorekit.card import Result

    out = tmp_path / "grid.json"
    assert main(["eval", "--model", str(trained), "--dataset", str(folder), "--task", "denoise", "--levels", "40",
                 "--seed-mode", "name", "--json", str(out)]) == 0
    grid = json.loads(out.read_text())
    args = shlex.split(Result.from_grid(grid, "mine_zoo")[0].command)[1:]
    assert args[-2:] == ["--seed-mode", "name"]
    args[2], args[4] = str(trained), str(folder)
    assert main([*args, "--json", str(tmp_path / "one.json")]) == 0
    assert json.loads((tmp_path / "one.json").read_text())["psnr"] == pytest.approx(grid["results"]["mine"][0]["psnr"])
