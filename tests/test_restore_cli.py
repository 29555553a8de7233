"""`restorekit restore` and `restorekit.restore(...)`: batches, names/formats/bit depth, skipping, bad inputs.

Bad inputs run through the real entry point (`python -m restorekit`, in parallel to keep the suite fast)
because "one clear line on stderr and a non-zero exit" is a promise about the process, not a function.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from zoo_helpers import save_zoo_model

import restorekit
from restorekit import io
from restorekit.api import Restorer, choose_zoo_model
from restorekit.card import ModelCard
from restorekit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run fastest on one thread


@pytest.fixture
def photos(tmp_path: Path, astronaut: torch.Tensor) -> Path:
    """A folder tree of small images in several formats and bit depths, plus one broken file."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    rgb = (astronaut[:, :60, :80].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(folder / "a.png")
    Image.fromarray(rgb).save(folder / "sub" / "b.jpg", quality=90)
    Image.fromarray(rgb[:, :, 0]).save(folder / "sub" / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(folder / "sub" / "alpha.png")
    io.write_image(folder / "sub" / "deep.png", rgb.astype(np.uint16) * 257)
    (folder / "sub" / "broken.png").write_bytes(b"this is not a png")
    return folder


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_folder_restore_keeps_names_formats_and_bit_depth(tiny_zoo, photos, tmp_path, capsys):
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = ["restore", str(photos), "-o", str(out), "--task", "denoise", "--level", "30", "--device", "cpu",
            "--json", str(report)]
    assert main(args) == 1  # the broken file fails, the rest are restored
    err = capsys.readouterr().err
    assert sum("broken.png" in line for line in err.splitlines()) == 1
    assert _files(out) == ["a.png", "sub/alpha.png", "sub/b.jpg", "sub/deep.png", "sub/grey.png"]
    formats = {name: Image.open(out / name) for name in _files(out)}
    assert formats["sub/b.jpg"].format == "JPEG" and formats["sub/grey.png"].mode == "L"
    assert formats["sub/alpha.png"].mode == "RGBA" and np.asarray(formats["sub/alpha.png"])[..., 3].min() == 200
    assert io.read_image(out / "sub" / "deep.png")[1].bit_depth == 16
    assert formats["a.png"].size == (80, 60)
    payload = json.loads(report.read_text())
    assert payload["model"] == "tiny-adafm" and payload["strength"] == pytest.approx(0.25)  # (30-15)/(75-15)
    assert payload["summary"] == {"restored": 5, "skipped": 0, "failed": 1}

    before = {name: (out / name).stat().st_mtime_ns for name in _files(out)}
    assert main(args[:-2]) == 1  # again: existing outputs are skipped, untouched
    assert {name: (out / name).stat().st_mtime_ns for name in _files(out)} == before
    assert "5 skipped" in capsys.readouterr().err
    (photos / "sub" / "broken.png").unlink()
    assert main(args[:-2] + ["--overwrite", "--strength", "0"]) == 0
    assert (out / "a.png").stat().st_mtime_ns != before["a.png"]


def test_tiling_and_the_onnxruntime_backend_match_plain_inference(tiny_zoo, photos, tmp_path):
    image = io.read_image(photos / "a.png")[0]
    common = dict(model="tiny-adafm", device="cpu", level=45)
    whole = restorekit.restore(image, tile=0, **common)
    tiled = restorekit.restore(image, tile=40, tile_overlap=8, **common)
    onnx = restorekit.restore(image, tile=40, tile_overlap=8, backend="onnxruntime", **common)
    assert (tiled - whole).abs().max() < 1 / 255
    assert (onnx - whole).abs().max() < 1 / 255
    assert (restorekit.restore(image, strength=0.0, **{**common, "level": None}) - whole).abs().max() > 1 / 255


def test_sr_with_the_builtin_bicubic_scales_and_keeps_the_alpha(photos, tmp_path):
    out = tmp_path / "sr.png"
    assert main(["restore", str(photos / "sub" / "alpha.png"), "-o", str(out), "--task", "sr", "--model", "bicubic",
                 "--scale", "3", "--device", "cpu"]) == 0
    result = Image.open(out)
    assert result.size == (240, 180) and result.mode == "RGBA"


def test_mask_keeps_the_input_where_black(tiny_zoo, photos, tmp_path):
    mask = np.zeros((60, 80), np.uint8)
    mask[:, 40:] = 255  # right half: take the model's output
    Image.fromarray(mask).save(tmp_path / "mask.png")
    image = io.read_image(photos / "a.png")[0]
    plain = restorekit.restore(image, model="tiny-adafm", device="cpu")
    masked = restorekit.restore(image, model="tiny-adafm", device="cpu", mask=tmp_path / "mask.png")
    assert torch.equal(masked[:, :, :40], image[:, :, :40])
    assert torch.allclose(masked[:, :, 40:], plain[:, :, 40:])


def test_one_liner_returns_the_input_type(tiny_zoo, photos, tmp_path):
    rgb8 = np.asarray(Image.open(photos / "a.png"))
    out8 = restorekit.restore(rgb8, model="tiny-adafm", device="cpu", strength=0.5)
    assert out8.dtype == np.uint8 and out8.shape == rgb8.shape
    grey16 = (rgb8[:, :, 0].astype(np.uint16) * 257)
    assert restorekit.restore(grey16, model="identity").dtype == np.uint16
    assert np.array_equal(restorekit.restore(grey16, model="identity"), grey16)
    from_file = restorekit.restore(photos / "sub" / "deep.png", tmp_path / "o.png", model="tiny-adafm", device="cpu")
    assert from_file.dtype == np.uint16 and io.read_image(tmp_path / "o.png")[1].bit_depth == 16
    expected = Restorer("tiny-adafm", device="cpu").restore(io.to_tensor(rgb8), strength=0.5)
    assert np.array_equal(out8, io.to_uint8(expected))


def test_task_auto_picks_the_blind_model(tiny_zoo):
    with pytest.raises(restorekit.errors.ModelError, match="needs a blind/multi-factor zoo model"):
        choose_zoo_model("auto")
    save_zoo_model(tiny_zoo, "tiny-mbn", "dncnn", {"in_channels": 3, "depth": 3, "features": 8},
                   task="restore", family="mbn", levels=None, blind=True)
    assert choose_zoo_model("auto") == "tiny-mbn"



def test_a_one_kernel_specialist_runs_only_by_name_and_evaluates_on_its_kernel(tiny_zoo, tmp_path):
    """RED-Net Table 10 trains one non-blind deblurring model per kernel (Gaussian / disk / motion): a disk-radius-4
    model is no answer to `--task deblur` on unknown blur, so the task never picks it; named, it runs, and `eval`
    without --degrade/--level degrades with the kernel of its card."""
    from restorekit import evaluation
    from restorekit.zoo import load_model

    disk = "blur:kind=disk,radius=4"
    save_zoo_model(tiny_zoo, "a-disk-deblur", "dncnn", {"in_channels": 3, "depth": 3, "features": 8}, task="deblur",
                   family="dncnn", levels=None, curve=False, degradation=disk)
    with pytest.raises(restorekit.errors.ModelError, match=r"no zoo model for task 'deblur'.*a-disk-deblur "
                                                           r"\(deblur, only blur:kind=disk,radius=4\)"):
        choose_zoo_model("deblur")
    save_zoo_model(tiny_zoo, "z-gaussian-deblur", "dncnn", {"in_channels": 3, "depth": 3, "features": 8},
                   task="deblur", family="dncnn", levels=(0.4, 2.6), curve=False)
    assert choose_zoo_model("deblur") == choose_zoo_model("deblur", 1.6) == "z-gaussian-deblur"
    assert Restorer("a-disk-deblur", device="cpu").restore(torch.rand(3, 24, 24)).shape == (3, 24, 24)

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 40, 3), np.uint8)).save(folder / "a.png")
    model = load_model("a-disk-deblur")
    on_its_kernel = evaluation.evaluate(model, folder, evaluation.default_setup("deblur"))
    assert on_its_kernel["protocol"]["degradation"] == disk and on_its_kernel["protocol"]["seed_mode"] == "name"
    asked = evaluation.evaluate(model, folder, evaluation.default_setup("deblur", level=1.6))
    assert "gauss" in asked["protocol"]["degradation"]  # an explicit level is the user's: the task's Gaussian blur
    with pytest.raises(ValueError, match="degradation"):
        ModelCard.model_validate({"name": "x", "architecture": "dncnn", "task": "deblur", "degradation": "blur:kind=?"})


def test_bad_inputs_give_one_line_and_no_output(tiny_zoo, photos, tmp_path):
    small = tmp_path / "small_mask.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    image = str(photos / "a.png")
    cases = {
        "unknown model": ([image, "--model", "no-such-model"], "unknown model 'no-such-model'"),
        "unknown task": ([image, "--task", "colorize"], "unknown task 'colorize'"),
        "level out of range": ([image, "--model", "tiny-adafm", "--level", "90"], "outside the range 15..75"),
        "mask size mismatch": ([image, "--model", "tiny-adafm", "--mask", str(small)], "mask is 10x10 but"),
        "unreadable file": ([str(photos / "sub" / "broken.png"), "--model", "tiny-adafm"], "broken.png: not a recognised"),
    }
    env = {**os.environ, "RESTOREKIT_WEIGHTS": str(tiny_zoo), "RESTOREKIT_BUNDLED": "none", "OMP_NUM_THREADS": "1"}
    running = {}
    for name, (args, _) in cases.items():
        out = tmp_path / "out" / name.replace(" ", "_")
        command = [sys.executable, "-m", "restorekit", "restore", *args, "-o", str(out), "--device", "cpu"]
        running[name] = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env), out)
    for name, (process, out) in running.items():
        stdout, stderr = process.communicate(timeout=120)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert process.returncode != 0, name
        assert len(lines) == 1 and lines[0].startswith("restorekit: error:"), (name, stderr)
        assert cases[name][1] in lines[0], (name, lines[0])
        assert _files(out) == [], name


def test_more_bad_inputs_in_process(tiny_zoo, photos, tmp_path, capsys):
    """The same one-line contract for the rarer mistakes (in-process: no extra interpreter start-up)."""
    image = str(photos / "a.png")
    cases = {
        "no model covers the level": ([image, "--task", "denoise", "--level", "90"], "covers level 90"),
        "missing file": ([str(tmp_path / "nope.png"), "--model", "tiny-adafm"], "nope.png: no such file"),
        "auto without a blind model": ([image, "--task", "auto"], "--task auto needs a blind"),
        "neither task nor model": ([image], "say what to do"),
        "strength out of range": ([image, "--model", "tiny-adafm", "--strength", "1.5"], "strength must be in [0, 1]"),
        "model for another task": ([image, "--task", "sr", "--model", "tiny-adafm", "--scale", "2"], "is a 'denoise' model"),
    }
    for name, (args, expected) in cases.items():
        out = tmp_path / "out" / name.replace(" ", "_")
        assert main(["restore", *args, "-o", str(out), "--device", "cpu"]) != 0, name
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and expected in lines[0], (name, lines)
        assert _files(out) == [], name


@pytest.mark.slow
def test_every_installed_zoo_model_tiles_like_untiled():
    """Acceptance: tiled == untiled within 1/255 at the default overlap, 700x500 with tile 128 (real zoo), for one
    restoration network (architecture and arguments); on 350x250, still 3 x 2 tiles at a quarter of the cost,
    further models of the same network (fine-tunes: the RED30s) and SR models (the tiles are cut from the input:
    CARN-M x8 writes 64 output pixels per input pixel, and AdaFM's SR slider runs its body at the output size)."""
    from restorekit.zoo import entries

    installed = [e for e in entries() if e.weights.is_file()]
    if not installed:
        pytest.skip("no trained models installed")
    image = torch.rand(3, 500, 700, generator=torch.Generator().manual_seed(0))
    networks_seen = set()
    for entry in installed:
        restorer = Restorer(entry.card.name, device="cpu", tile=128)
        scales = restorer.info.scales  # a multi-head model (carn_x234) or the SR slider needs its scale
        scale = {"scale": min(scales)} if len(scales) > 1 else {}
        if restorer.info.tiling == "whole":  # runs on the whole image whatever the tile (DL-Net): nothing to compare
            continue
        network = (entry.card.architecture, json.dumps(entry.card.arguments, sort_keys=True))
        upscales = restorer.info.scale_range is not None or min(scales, default=1) > 1
        quarter = upscales or network in networks_seen
        networks_seen.add(network)
        sample = image[:, :250, :350] if quarter else image
        whole = Restorer(restorer.model, device="cpu", tile=0).restore(sample, **scale)
        assert (restorer.restore(sample, **scale) - whole).abs().max() < 1 / 255, entry.card.name


# --------------------------------------------------------------------------- issue 13: output folder and temps


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A folder this process cannot write: mode 0555, or for root (who ignores modes) the immutable flag."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr +i: no way to make a folder read-only")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("problem", ["output is a file", "output is read-only", "a sub-folder is a file",
                                     "--json is a folder", "--json folder is read-only"])
def test_an_unusable_output_is_refused_before_any_image(problem, photos, tmp_path, read_only_folder, monkeypatch,
                                                        capsys):
    """Issue 13, finding 10: one line and exit 2 up front, instead of after every image was computed."""
    from restorekit.cli import restore_cmd

    def no_work(*args, **kwargs):
        raise AssertionError("images were computed before the output was checked")

    monkeypatch.setattr(restore_cmd, "run_jobs", no_work)
    out, report, named = tmp_path / "out", tmp_path / "report.json", None
    if problem == "output is a file":
        out.write_bytes(b"")
        named = out
    elif problem == "output is read-only":
        out = named = read_only_folder
    elif problem == "a sub-folder is a file":
        out.mkdir()
        (out / "sub").write_bytes(b"")
        named = out / "sub"
    elif problem == "--json is a folder":
        report = named = tmp_path
    else:
        report, named = read_only_folder / "report.json", read_only_folder
    args = ["restore", str(photos), "-o", str(out), "--model", "identity", "--json", str(report)]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"restorekit: error: {named}: "), lines


def test_reports_and_outputs_are_world_readable_under_umask_022(photos, tmp_path):
    """Issue 13, finding 10: the --json report used to be created 0600 while images were 0644."""
    (photos / "sub" / "broken.png").unlink()
    previous = os.umask(0o022)
    try:
        assert main(["restore", str(photos), "-o", str(tmp_path / "out"), "--model", "identity",
                     "--json", str(tmp_path / "report.json")]) == 0
    finally:
        os.umask(previous)
    assert oct((tmp_path / "report.json").stat().st_mode & 0o777) == oct(0o644)
    assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "out").rglob("*.*")} == {oct(0o644)}


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


def test_a_temp_file_left_by_sigkill_is_removed_by_the_next_run(tmp_path):
    """Issue 13, finding 8: kill `restorekit restore` while it writes; the rerun removes the stranded temp."""
    from restorekit.atomic import remove_stale_temps

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)  # slow to encode
    for i in range(4):
        Image.fromarray(np.roll(noise, i, axis=0)).save(folder / f"big{i}.png", compress_level=0)
    command = [sys.executable, "-m", "restorekit", "restore", str(folder), "-o", str(out), "--model", "identity"]
    for _attempt in range(3):  # the kill can land just after a rename; then try again
        writer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60  # safety limit, not a speed test
        while not any(t.name.startswith(".big") for t in _temps(out)) and writer.poll() is None:
            assert time.monotonic() < deadline, "no image was being written"
            time.sleep(0.005)
        writer.kill()
        writer.wait()
        if _temps(out):
            break
        shutil.rmtree(out, ignore_errors=True)
    stranded = _temps(out)
    assert stranded, "could not catch the writer mid-write"
    assert [p.name for p in io.list_images(out)] == sorted(p.name for p in out.glob("big*.png"))  # ignored as input

    assert main(command[3:]) == 0  # the next run: cleans up, then finishes the set
    assert _temps(out) == [] and sorted(p.name for p in out.iterdir()) == [f"big{i}.png" for i in range(4)]
    assert remove_stale_temps(out) == []


def _write_forever(path: Path, started) -> None:
    from restorekit.atomic import atomic_write

    atomic_write(path, lambda handle: (handle.write(b"partial"), handle.flush(), started.set(), time.sleep(120)))


def _die_writing(path: Path) -> None:
    from restorekit.atomic import atomic_write

    atomic_write(path, lambda handle: (handle.write(b"partial"), handle.flush(), os.kill(os.getpid(), signal.SIGKILL)))


def test_remove_stale_temps_spares_live_writers_other_hosts_and_foreign_files(tmp_path):
    """Issue 13, finding 8: only temps whose writer is gone (dead, or its pid reused since) are removed."""
    import multiprocessing

    from restorekit.atomic import remove_stale_temps

    fork = multiprocessing.get_context("fork")
    (tmp_path / "sub").mkdir()
    dead = fork.Process(target=_die_writing, args=(tmp_path / "sub" / "dead.png",))
    dead.start()
    dead.join()
    assert dead.exitcode == -signal.SIGKILL
    started = fork.Event()
    live = fork.Process(target=_write_forever, args=(tmp_path / "live.png", started))
    live.start()
    try:
        assert started.wait(30)
        (dead_temp,) = _temps(tmp_path / "sub")
        (live_temp,) = [p for p in _temps(tmp_path) if p.parent == tmp_path]
        other_host = tmp_path / re.sub(r"\.rk-[0-9a-f]+-", ".rk-00000000-", dead_temp.name)
        reused_pid = tmp_path / "sub" / live_temp.name.replace(".live.png.", ".older.png.")
        for made in (other_host, reused_pid, tmp_path / ".a.png.k2j3h4.tmp", tmp_path / "notes.tmp"):
            made.write_bytes(b"")
        hour_ago = time.time() - 3600
        os.utime(reused_pid, (hour_ago, hour_ago))  # written before the live process with that pid started

        assert sorted(remove_stale_temps(tmp_path)) == sorted([dead_temp, reused_pid])
        assert live_temp.exists() and other_host.exists()
        assert (tmp_path / ".a.png.k2j3h4.tmp").exists() and (tmp_path / "notes.tmp").exists()
    finally:
        live.kill()
        live.join()


def test_level_auto_estimates_each_image_and_says_so(tiny_zoo, astronaut, tmp_path, capsys):
    """Issue 18: `--level auto` sets each image's strength from its estimated level (restorekit.estimate), says
    the estimate on stderr and in --json, and matches the same model run at that level by hand."""
    folder = tmp_path / "in"
    folder.mkdir()
    clean = astronaut[:, :96, :128].permute(1, 2, 0).numpy() * 255
    rng = np.random.default_rng(0)
    for sigma in (20, 50):
        noisy = np.clip(np.round(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"s{sigma}.png")
    out, report = tmp_path / "out", tmp_path / "report.json"
    assert main(["restore", str(folder), "-o", str(out), "--model", "tiny-adafm", "--level", "auto",
                 "--device", "cpu", "--json", str(report)]) == 0
    err = capsys.readouterr().err
    assert "s20.png: estimated denoise level" in err and "s50.png: estimated denoise level" in err
    files = {Path(f["input"]).name: f for f in json.loads(report.read_text())["files"]}
    low, high = files["s20.png"]["level"], files["s50.png"]["level"]
    assert abs(low - 20) < 3 and abs(high - 50) < 5 and "Chen et al. 2015" in files["s20.png"]["level_estimate"]
    by_hand = Restorer("tiny-adafm", device="cpu").restore(io.read_image(folder / "s50.png")[0], level=high)
    assert np.array_equal(io.to_uint8(by_hand), io.to_uint8(io.read_image(out / "s50.png")[0]))
    assert main(["restore", str(folder / "s20.png"), "-o", str(tmp_path / "o2"), "--model", "bicubic",
                 "--task", "sr", "--scale", "2", "--level", "auto"]) == 0  # a model without levels ignores it
    assert "has no level range; --level is ignored" in capsys.readouterr().err


def test_level_auto_estimates_the_blur_of_a_blurred_sr_input(astronaut, tmp_path, capsys):
    """Issue 18 item 3: for SR with a blur level (DL-Net, told its input's degradation) `--level auto` estimates the
    Gaussian width before the downscale from the image alone (restorekit.estimate.blur_width) and runs at it."""
    from restorekit.degrade.spec import canonical_spec, parse_spec

    low, _ = parse_spec(canonical_spec("sr", level=2.5, scale=2)).apply_one(astronaut[:, :192, :256], 0)
    Image.fromarray(io.to_uint8(low)).save(tmp_path / "blurred_lr.png")
    report = tmp_path / "report.json"
    assert main(["restore", str(tmp_path / "blurred_lr.png"), "-o", str(tmp_path / "out.png"), "--model", "dlnet_vdsr",
                 "--task", "sr", "--scale", "2", "--level", "auto", "--device", "cpu", "--json", str(report)]) == 0
    assert "estimated sr level" in capsys.readouterr().err
    (entry,) = json.loads(report.read_text())["files"]
    assert abs(entry["level"] - 2.5) < 0.6 and "before the x2 downscale" in entry["level_estimate"]
