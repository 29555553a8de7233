"""bench/denoise_vs_bm3d.py (issue 19 item 4): both methods must see the SAME noisy image, made with the
evaluation protocol, and be scored the same way; without the optional bm3d package or the benchmark images it
says why in one line and exits 0. The timings themselves are not tested."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from script_loader import load_script
from skimage import data as skdata

from restorekit import evaluation, io, metrics
from restorekit.zoo import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

bench = load_script("denoise_vs_bm3d", "bench")


@pytest.fixture
def tiny_set(tmp_path: Path) -> Path:
    """Two 40x48 colour crops of scikit-image's samples, as a dataset folder."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, image in (("astronaut", skdata.astronaut()), ("coffee", skdata.coffee())):
        io.write_image(folder / f"{name}.png", io.to_tensor(image[100:140, 100:148]))
    return folder


def test_both_methods_score_the_same_noisy_input(tiny_set, monkeypatch):
    """A stand-in CBM3D that returns its input unchanged must score exactly the evaluation protocol's noisy
    image (make_input, seeded per image); the model runs at lambda(sigma) from its card."""
    monkeypatch.setattr(bench, "bm3d_denoise", lambda noisy, sigma: noisy)
    model = load_model("adafm_denoise_s15_s75")
    items = evaluation.dataset_items(tiny_set)
    result = bench.compare(model, items, 50.0)
    setup = evaluation.default_setup("denoise", level=50.0)
    for (name, clean_path, _), row in zip(items, result["images"], strict=True):
        noisy, clean = evaluation.make_input(io.read_image(clean_path)[0], name, setup)
        expected = float(metrics.psnr_batch(noisy.clamp(0, 1), clean, setup.protocol))
        assert row["cbm3d"]["psnr"] == pytest.approx(expected, abs=1e-9)
        assert row["model"]["psnr"] > expected + 3  # the denoiser denoises: sigma 50 input is about 15 dB
    assert 0 < result["strength"] < 1
    means = result["means"]
    assert result["time_ratio_cbm3d_over_model"] == pytest.approx(means["cbm3d"]["seconds"] / means["model"]["seconds"])
    assert result["psnr_gap_model_minus_cbm3d"] == pytest.approx(means["model"]["psnr"] - means["cbm3d"]["psnr"])


def test_without_bm3d_it_says_so_and_exits_cleanly(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d -> ImportError
    bench.main(["--limit", "1"])
    out = capsys.readouterr().out
    assert out.startswith("bench/denoise_vs_bm3d.py: skipped, the optional package 'bm3d' is not installed")
    assert out.count("\n") == 1


def test_missing_images_say_so_in_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("bm3d", reason="the optional bm3d package (restorekit[simusr]) is not installed")
    bench.main(["--dataset", str(tmp_path / "absent"), "--limit", "1"])
    out = capsys.readouterr().out
    assert out.startswith("bench/denoise_vs_bm3d.py: skipped, no benchmark images") and out.count("\n") == 1


def test_real_cbm3d_denoises_and_writes_json(tiny_set, tmp_path, capsys):
    pytest.importorskip("bm3d", reason="the optional bm3d package (restorekit[simusr]) is not installed")
    target = tmp_path / "bench.json"
    bench.main(["--dataset", str(tiny_set), "--limit", "1", "--sigmas", "50", "--json", str(target)])
    result = json.loads(target.read_text())["results"][0]
    assert result["means"]["cbm3d"]["psnr"] > 20  # sigma 50 noisy input: about 15 dB
    assert "| 50 |" in capsys.readouterr().out
