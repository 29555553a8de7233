"""`restorekit eval`: the SR benchmark protocol reproduces the field's bicubic table (issue 2 acceptance)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit import evaluation
from restorekit.cli import main
from restorekit.zoo import load_model

# The field's standard bicubic table (Y channel, border = scale, MATLAB bicubic, rounded output).
BICUBIC_TABLE = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
    ("BSD100", 2): (29.56, 0.8431), ("BSD100", 3): (27.21, 0.7385), ("BSD100", 4): (25.96, 0.6675),
}


@pytest.mark.data
@pytest.mark.parametrize("dataset,scale", sorted(BICUBIC_TABLE))
def test_bicubic_reproduces_the_standard_table(data_dir, dataset, scale, tmp_path):
    out = tmp_path / "result.json"
    args = ["eval", "--model", "bicubic", "--dataset", str(data_dir / "test" / dataset),
            "--task", "sr", "--scale", str(scale), "--json", str(out)]
    if dataset == "BSD100":
        args += ["--crop-to", "480x320"]  # the SR benchmark's top-left crop of the BSDS images
    assert main(args) == 0
    result = json.loads(out.read_text())
    paper_psnr, paper_ssim = BICUBIC_TABLE[(dataset, scale)]
    assert result["psnr"] == pytest.approx(paper_psnr, abs=0.03)
    assert result["ssim"] == pytest.approx(paper_ssim, abs=0.003)
    assert result["protocol"]["y_channel"] and result["protocol"]["crop_border"] == scale
    assert len(result["images"]) == {"Set5": 5, "Set14": 14, "BSD100": 100}[dataset]


def _write_folder(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in images.items():
        Image.fromarray(array).save(folder / name)
    return folder


def test_eval_json_has_the_documented_fields(tmp_path, astronaut):
    array = (astronaut.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:96, :120]
    folder = _write_folder(tmp_path / "imgs", {"a.png": array, "b.png": array[:90, :99]})
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "bicubic", "--dataset", str(folder), "--task", "sr", "--scale", "3",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("model", "dataset", "task", "scale", "level", "psnr", "ssim", "protocol", "images"):
        assert key in result
    assert set(result["protocol"]) >= {"y_channel", "crop_border", "quantize", "y_formula", "crop_to"}
    assert [r["name"] for r in result["images"]] == ["a.png", "b.png"]
    assert result["psnr"] == pytest.approx(np.mean([r["psnr"] for r in result["images"]]))
    assert 15 < result["psnr"] < 40


def test_an_sr_level_is_the_blur_width_before_the_downscale(tmp_path, astronaut):
    """Task 'sr': --level u is DL-Net's blurred SR (a Gaussian of width u, then the bicubic downscale), the same
    inputs as the explicit --degrade spec; level 0 / none is the SR benchmark's plain downscale."""
    array = (astronaut.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:96, :120]
    folder = _write_folder(tmp_path / "imgs", {"a.png": array})
    results = {}
    for name, extra in {"level": ["--level", "2.6"], "spec": ["--degrade", "blur:kind=gaussian,width=2.6+down:scale=2"],
                        "plain": [], "zero": ["--level", "0"]}.items():
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--model", "bicubic", "--dataset", str(folder), "--task", "sr", "--scale", "2",
                     "--json", str(out), *extra]) == 0
        results[name] = json.loads(out.read_text())
    assert results["level"]["protocol"]["degradation"] == "blur:kind=gaussian,width=2.6+down:scale=2"
    assert results["level"]["psnr"] == results["spec"]["psnr"] and results["level"]["level"] == 2.6
    assert results["zero"]["psnr"] == results["plain"]["psnr"] > results["level"]["psnr"] + 2


def test_protocol_switches_change_the_number_and_are_recorded(tmp_path, astronaut):
    array = (astronaut.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:128, :128]
    folder = _write_folder(tmp_path / "imgs", {"a.png": array})
    results = {}
    for name, extra in {"y": [], "rgb": ["--rgb"], "opencv": ["--y-formula", "opencv"], "trunc": ["--quantize", "trunc"]}.items():
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--model", "bicubic", "--dataset", str(folder), "--task", "sr", "--scale", "2",
                     "--json", str(out), *extra]) == 0
        results[name] = json.loads(out.read_text())
    assert results["rgb"]["protocol"]["y_channel"] is False
    assert results["opencv"]["psnr"] < results["y"]["psnr"] - 1.0  # full-range luma: about 1.32 dB lower
    assert results["trunc"]["psnr"] < results["y"]["psnr"]
    assert len({round(r["psnr"], 6) for r in results.values()}) == 4


def test_identity_model_and_crop_to(tmp_path):
    rng = np.random.default_rng(0)
    folder = _write_folder(tmp_path / "imgs", {"tall.png": rng.integers(0, 255, (481, 321, 3), dtype=np.uint8)})
    model = load_model("identity")
    setup = evaluation.default_setup("restore", degrade=None, crop_to=evaluation.parse_crop("480x320"))
    assert evaluation.crop_to(torch.zeros(3, 481, 321), setup.crop_to).shape == (3, 480, 320)
    assert evaluation.crop_to(torch.zeros(3, 321, 481), setup.crop_to).shape == (3, 320, 480)
    with pytest.raises(Exception, match="needs --degrade"):
        evaluation.evaluate(model, folder, setup)


def test_paired_folders_are_scored_without_degrading(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    _write_folder(tmp_path / "pairs" / "clean", {"1.png": clean})
    _write_folder(tmp_path / "pairs" / "degraded", {"1.png": clean})
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "identity", "--dataset", str(tmp_path / "pairs"), "--task", "restore",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["images"][0]["psnr"] == float("inf")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "restorekit", *args], capture_output=True, text=True)


def test_version_and_help():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("restorekit ")
    assert "eval" in run_cli("--help").stdout


@pytest.mark.parametrize("args,expected", [
    (["--model", "nonsense", "--dataset", ".", "--task", "sr", "--scale", "2"], "unknown model 'nonsense'"),
    (["--model", "bicubic", "--dataset", "/no/such/folder", "--task", "sr", "--scale", "2"], "no such dataset"),
    (["--model", "bicubic", "--dataset", ".", "--task", "sr"], "needs --scale"),
    (["--model", "bicubic", "--dataset", ".", "--task", "sr", "--scale", "2", "--crop-to", "abc"], "--crop-to"),
])
def test_bad_arguments_give_one_clear_line(args, expected):
    done = run_cli("eval", *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr


def test_a_corrupt_image_in_the_dataset_is_named(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    done = run_cli("eval", "--model", "bicubic", "--dataset", str(folder), "--task", "sr", "--scale", "2")
    assert done.returncode == 2
    assert "broken.png" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_grey_models_are_scored_on_the_matlab_y_plane_of_colour_images(tmp_path, astronaut):
    """DeJPEG on LIVE1 (AdaFM, ARCNN): the Y channel of MATLAB rgb2ycbcr (studio swing) is compressed as a
    grey JPEG, restored and scored. A 1-channel model gets that plane from an RGB dataset by default."""
    from restorekit.data.sources import to_channels
    from restorekit.models import build

    white_black = np.array([[[255, 255, 255], [0, 0, 0]]], np.uint8)
    assert to_channels(white_black, 1, grey="y")[..., 0].tolist() == [[235, 16]]  # studio swing
    assert to_channels(white_black, 1, grey="luma")[..., 0].tolist() == [[255, 0]]  # full range
    y = evaluation.to_grey(astronaut, "y")
    assert y.shape == (1, 512, 512) and torch.equal(y * 255, (y * 255).round())  # an 8-bit plane, like a file

    array = (astronaut.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:64, :80]
    folder = _write_folder(tmp_path / "imgs", {"a.png": array})
    model = build("dncnn", in_channels=1, depth=3, features=8)
    for p in model.module.parameters():  # DnCNN predicts the residual: all zeros make it the identity
        torch.nn.init.zeros_(p)
    setup = evaluation.default_setup("jpeg", level=10)
    result = evaluation.evaluate(model, folder, setup)
    assert result["protocol"]["grey"] == "y" and 24 < result["images"][0]["psnr"] < 40  # JPEG q10 of Y
    degraded, clean = evaluation.make_input(astronaut[:, :64, :80], "a.png", evaluation.setup_for_model(setup, model))
    assert degraded.shape == clean.shape == (1, 64, 80)
    assert torch.equal(clean, evaluation.to_grey(astronaut[:, :64, :80], "y"))


def test_y_only_sr_models_get_the_y_float_input_by_default(tmp_path, astronaut):
    """Issue 12 item 7: the VDSR/IDN scripts degrade the unrounded HR Y as floating point (no uint8 LR)."""
    from restorekit.models import build

    grey, colour = build("vdsr", depth=3, features=4), build("bicubic", scale=2)
    setup = evaluation.default_setup("sr", scale=2)
    y_setup = evaluation.setup_for_model(setup, grey)
    assert y_setup.sr_input == "y-float" and y_setup.grey == "y"
    assert evaluation.setup_for_model(setup, colour).sr_input is None  # RGB models keep today's protocol
    assert evaluation.setup_for_model(replace_sr_input(setup, "rgb-uint8"), grey).sr_input == "rgb-uint8"
    low, high = evaluation.make_input(astronaut[:, :33, :40], "a.png", y_setup)
    assert low.shape == (1, 16, 20) and high.shape == (1, 32, 40)
    assert not torch.equal(high * 255, (high * 255).round())  # unrounded Y
    assert not torch.equal(low * 255, (low * 255).round())  # no uint8 LR
    assert y_setup.describe()["sr_input"] == "y-float"
    assert y_setup.describe()["degradation"] == "y_unrounded+modcrop:2+matlab_bicubic_down:2"
    rounded, _ = evaluation.make_input(astronaut[:, :32, :40], "a.png",
                                       evaluation.setup_for_model(replace_sr_input(setup, "rgb-uint8"), grey))
    assert torch.equal(rounded * 255, (rounded * 255).round())

    array = (astronaut.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:48, :48]
    folder = _write_folder(tmp_path / "imgs", {"a.png": array})
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "bicubic", "--dataset", str(folder), "--task", "sr", "--scale", "2",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["protocol"]["sr_input"] == "rgb-uint8"
    assert main(["eval", "--model", "bicubic", "--dataset", str(folder), "--task", "sr", "--scale", "2",
                 "--sr-input", "y-float", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["protocol"]["sr_input"] == "y-float" and result["protocol"]["grey"] == "y"


def replace_sr_input(setup, sr_input):
    from dataclasses import replace

    return replace(setup, sr_input=sr_input)


def test_scale_goes_to_the_builder_or_to_the_call(tmp_path):
    """bicubic and IDN fix the scale when built; VDSR and DnCNN-3 take it per call (one model, x2-x4)."""
    from restorekit.cli.eval_cmd import scale_argument
    from restorekit.models import build

    assert scale_argument("bicubic", "sr", 3) == {"scale": 3}
    assert scale_argument("vdsr", "sr", 3) == {} and scale_argument("dncnn3", "sr", 3) == {}
    assert scale_argument("bicubic", "denoise", None) == {}
    idn = build("idn", scale=2, features=16, blocks=1, distilled=4)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in idn.module.state_dict().items()}, str(tmp_path / "idn.safetensors"))
    assert scale_argument(str(tmp_path / "idn.safetensors"), "sr", 4) == {"scale": 4}


# ------------------------------------------------------------------ paired datasets (issue 13, finding 6)


def _noisy_pairs(root, clean_names=("a.png",), degraded_names=("a.png",), size=(24, 28)):
    """A paired dataset: clean/ random images, degraded/ those plus a fixed +-20 disturbance (no noise model)."""
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    noisy = np.clip(clean.astype(int) + rng.integers(-20, 21, clean.shape), 0, 255).astype(np.uint8)
    _write_folder(root / "clean", {name: clean for name in clean_names})
    _write_folder(root / "degraded", {name: noisy for name in degraded_names})
    return root


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_paired_denoise_needs_no_level_and_records_the_files_as_given(tmp_path):
    """issue 13, finding 6: --task denoise on pairs demanded a level; it only picks the metric protocol."""
    pairs = _noisy_pairs(tmp_path / "pairs")
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "identity", "--dataset", str(pairs), "--task", "denoise", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["protocol"]["degradation"] == evaluation.GIVEN == "given (paired files)"
    assert result["level"] is None and result["level_source"] is None and result["unpaired"] == []
    assert result["protocol"]["seed"] is None and result["protocol"]["y_channel"] is False  # denoise: RGB
    clean, noisy = (evaluation.io.read_image(pairs / side / "a.png")[0] for side in ("clean", "degraded"))
    assert result["psnr"] == pytest.approx(float(evaluation.metrics.psnr(noisy, clean)))


def test_a_stated_level_on_pairs_is_recorded_never_applied(tmp_path):
    """issue 13, finding 6: --level 50 on pairs recorded "noise:sigma=50" although no noise was added."""
    pairs = _noisy_pairs(tmp_path / "pairs")
    plain, stated = tmp_path / "plain.json", tmp_path / "stated.json"
    common = ["eval", "--model", "identity", "--dataset", str(pairs), "--task", "denoise"]
    assert main([*common, "--json", str(plain)]) == 0
    assert main([*common, "--level", "50", "--json", str(stated)]) == 0
    plain, stated = json.loads(plain.read_text()), json.loads(stated.read_text())
    assert stated["level"] == 50 and stated["level_source"] == "stated"
    assert stated["protocol"]["degradation"] == "given (paired files)"
    assert "sigma" not in json.dumps(stated["protocol"])
    assert stated["psnr"] == plain["psnr"]  # the inputs are the files, untouched by the level


def test_a_stated_level_sets_a_modulated_models_strength_on_pairs(tiny_zoo, tmp_path):
    """issue 13, finding 6: for AdaFM the stated level is the model's condition (lambda(level)), still not applied."""
    pairs = _noisy_pairs(tmp_path / "pairs")
    results = {}
    for level in ("15", "75"):
        out = tmp_path / f"{level}.json"
        assert main(["eval", "--model", "tiny-adafm", "--dataset", str(pairs), "--task", "denoise",
                     "--level", level, "--json", str(out)]) == 0
        results[level] = json.loads(out.read_text())
    assert results["15"]["strength"] == pytest.approx(0.0) and results["75"]["strength"] == pytest.approx(1.0)
    assert results["15"]["psnr"] != results["75"]["psnr"]
    assert {r["level_source"] for r in results.values()} == {"stated"}
    assert {r["protocol"]["degradation"] for r in results.values()} == {"given (paired files)"}


def test_paired_sr_keeps_the_sr_metric_protocol(tmp_path):
    """issue 13, finding 6: --task sr on LR/HR pairs scores on Y with border S; no synthesised SR input is recorded."""
    rng = np.random.default_rng(2)
    high = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    low = np.asarray(Image.fromarray(high).resize((16, 12), Image.BICUBIC))
    _write_folder(tmp_path / "pairs" / "clean", {"x.png": high})
    _write_folder(tmp_path / "pairs" / "degraded", {"x.png": low})
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "bicubic", "--dataset", str(tmp_path / "pairs"), "--task", "sr", "--scale", "2",
                 "--json", str(out)]) == 0
    protocol = json.loads(out.read_text())["protocol"]
    assert protocol["y_channel"] is True and protocol["crop_border"] == 2
    assert protocol["degradation"] == "given (paired files)" and "sr_input" not in protocol


@pytest.mark.parametrize("clean_names,degraded_names,unpaired", [
    (("a.png",), ("a.png", "b.png"), "degraded/b.png"),
    (("a.png", "c.png"), ("a.png",), "clean/c.png"),
])
def test_a_file_without_a_partner_is_named_or_skipped_with_a_warning(tmp_path, capsys, clean_names,
                                                                    degraded_names, unpaired):
    """issue 13, finding 6: a degraded file without a clean partner was skipped silently."""
    pairs = _noisy_pairs(tmp_path / "pairs", clean_names, degraded_names)
    common = ["eval", "--model", "identity", "--dataset", str(pairs), "--task", "restore"]
    assert main(common) == 2
    line = _error_line(capsys)
    assert unpaired in line and "--skip-unpaired" in line

    out = tmp_path / "r.json"
    assert main([*common, "--skip-unpaired", "--json", str(out)]) == 0
    warning = [x for x in capsys.readouterr().err.splitlines() if "warning" in x]
    assert len(warning) == 1 and unpaired in warning[0] and "skipped 1 file" in warning[0]
    result = json.loads(out.read_text())
    assert result["unpaired"] == [unpaired] and [r["name"] for r in result["images"]] == ["a.png"]


@pytest.mark.parametrize("side", ["degraded", "clean"])
def test_two_files_with_one_name_are_ambiguous(tmp_path, capsys, side):
    """issue 13, finding 6: a.jpg and a.png both in degraded/ (or clean/): one was picked silently."""
    pairs = _noisy_pairs(tmp_path / "pairs")
    Image.open(pairs / side / "a.png").convert("RGB").save(pairs / side / "a.jpg")
    assert main(["eval", "--model", "identity", "--dataset", str(pairs), "--task", "restore", "--skip-unpaired"]) == 2
    line = _error_line(capsys)
    assert f"{side}: a.jpg and a.png" in line and "same name" in line


def test_degrade_specs_contradict_given_pairs(tmp_path, capsys):
    """issue 13, finding 6: --degrade would make new inputs from files that are already degraded."""
    pairs = _noisy_pairs(tmp_path / "pairs")
    assert main(["eval", "--model", "identity", "--dataset", str(pairs), "--task", "restore",
                 "--degrade", "noise:sigma=5"]) == 2
    line = _error_line(capsys)
    assert "paired dataset" in line and "--degrade 'noise:sigma=5'" in line


def test_eval_json_is_world_readable_under_umask_022(tmp_path):
    """issue 13, finding 10: JSON results were created 0600 (the temp file's mode) under umask 022.
    In a subprocess: the umask is process-wide."""
    pairs = _noisy_pairs(tmp_path / "pairs")
    single, grid = tmp_path / "single.json", tmp_path / "grid" / "grid.json"
    code = (
        "import os, sys\n"
        "os.umask(0o022)\n"
        "from restorekit.cli import main\n"
        f"common = ['eval', '--dataset', {str(pairs)!r}, '--task', 'restore', '--model', 'identity']\n"
        f"assert main([*common, '--json', {str(single)!r}]) == 0\n"
        f"grid = ['eval', '--dataset', {str(pairs / 'clean')!r}, '--task', 'restore', '--model', 'identity']\n"
        f"assert main([*grid, '--degrade', 'noise:sigma=5', '--degrade', 'blur:width=2', '--json', {str(grid)!r}]) == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for path in (single, grid, grid.with_suffix(".md"), grid.with_suffix(".png")):
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path


def test_ensemble_averages_the_eight_flips_and_is_recorded(tmp_path, astronaut):
    """RED-Net's x8 test-time ensemble (`--ensemble`): an equivariant model (bicubic) is unchanged by it up to float
    rounding; the protocol records it; a record-taking model refuses it."""
    array = (astronaut.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:64, :80]
    folder = _write_folder(tmp_path / "imgs", {"a.png": array})
    results = {}
    for name, extra in {"plain": [], "ensemble": ["--ensemble"]}.items():
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--model", "identity", "--dataset", str(folder), "--task", "denoise", "--level", "25",
                     "--json", str(out), *extra]) == 0
        results[name] = json.loads(out.read_text())
    assert results["ensemble"]["protocol"]["ensemble"] is True and results["plain"]["protocol"]["ensemble"] is False
    assert results["ensemble"]["psnr"] == pytest.approx(results["plain"]["psnr"], abs=1e-6)
    from restorekit import models

    dlnet = models.build("dlnet_vdsr", scale=2, depth=3, features=4)
    setup = evaluation.default_setup("sr", scale=2, level=1.3, ensemble=True)
    with pytest.raises(Exception, match="without --ensemble"):
        evaluation.evaluate(dlnet, folder, setup)


def test_a_fractional_sr_scale_crops_hr_to_whole_lr_pixels_and_rounds_the_border_up():
    """Issue 19 item 2: AdaFM's x3 -> x4 slider is scored at x3.5 as a bicubic x3.5 benchmark (our protocol,
    documented): HR cropped to multiples of 7 so the LR side is whole (2/7 of it), border ceil(3.5) = 4."""
    from restorekit import ops
    from restorekit.models import build

    setup = evaluation.default_setup("sr", scale=3.5)
    assert setup.scale == 3.5 and setup.protocol.crop_border == 4
    assert evaluation.default_setup("sr", scale=3.0).scale == 3 and isinstance(evaluation.default_setup(
        "sr", scale=3.0).scale, int)  # a whole factor stays an int (x3, not x3.0)
    assert setup.degradation_spec() == "modcrop:7+matlab_bicubic_down:3.5+round_uint8"
    lr, hr = evaluation.sr_pair(torch.rand(3, 75, 51, generator=torch.Generator().manual_seed(0)), setup)
    assert hr.shape[-2:] == (70, 49) and lr.shape[-2:] == (20, 14)
    assert build("bicubic", scale=3.5)(lr[None]).shape[-2:] == hr.shape[-2:]
    assert ops.scale_modulus(4) == 4 and ops.scale_modulus(2.5) == 5 and ops.scale_modulus(3.25) == 13
