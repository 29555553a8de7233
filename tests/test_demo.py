"""`make demo` on embedded images: baselines plus every zoo model, report, plots."""

from __future__ import annotations

import json

from restorekit.card import ModelCard
from restorekit.demo import BASELINE_CASES, DemoCase, run_demo, zoo_cases


def test_zoo_models_are_run_at_levels_inside_their_range():
    cards = [ModelCard(name="dn", architecture="adafm_net", task="denoise", levels=(15, 75)),
             ModelCard(name="up", architecture="bicubic", task="sr", scales=[3, 4])]
    cases = zoo_cases(cards)
    assert [c.level for c in cases if c.model == "dn"] == [15, 25, 50, 75]
    assert [c.scale for c in cases if c.model == "up"] == [3, 4]


def test_demo_writes_images_report_and_plots(tmp_path):
    cases = (DemoCase("sr", None, 2, "bicubic"), *[c for c in BASELINE_CASES if c.task == "denoise"])
    report = run_demo(tmp_path, cases=cases, names=("camera",))
    assert {r["case"] for r in report["results"]} == {"sr_x2", "denoise_15", "denoise_25", "denoise_50"}
    sr = next(r for r in report["results"] if r["case"] == "sr_x2")
    assert 25 < sr["psnr"] < 40 and sr["protocol"]["y_channel"]
    noisy = {r["level"]: r["psnr"] for r in report["results"] if r["task"] == "denoise"}
    assert noisy[15] > noisy[25] > noisy[50]  # identity on noisier inputs scores lower
    assert (tmp_path / "sr_x2" / "camera_bicubic.png").is_file()
    assert (tmp_path / "denoise_levels.png").stat().st_size > 1000
    assert "denoise_levels.png" in (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["samples"] == ["camera"]


def test_a_multi_scale_zoo_model_runs_at_each_of_its_scales(tmp_path):
    """`make demo` broke on the first multi-scale zoo model (carn_x234: x2/x3/x4 heads, the scale is a call
    argument): every SR case must pass its scale to the call, not only to the model's construction."""
    cases = tuple(c for c in zoo_cases() if c.model == "carn_x234")
    assert [c.scale for c in cases] == [2, 3, 4]
    report = run_demo(tmp_path, cases=cases[:1], names=("camera",))
    (row,) = report["results"]
    assert row["scale"] == 2 and row["psnr"] > 25


def test_models_with_different_level_ranges_share_one_plot_and_grey_models_see_grey_samples(tmp_path):
    """`make demo` broke when the zoo held two denoisers over different ranges (AdaFM 15..75, RED30 10..70): the
    plot needed every model at the same levels. Each model is now drawn at its own levels; a grey model
    (RED30) is scored on grey samples, as `restorekit eval` scores it."""
    from restorekit.demo import write_plots

    rows = [{"task": "denoise", "model": m, "level": v, "psnr": 30 - v / 10}
            for m, levels in (("a", (15, 25, 50)), ("b", (10, 25, 70))) for v in levels]
    assert write_plots(rows, tmp_path) == ["denoise_levels.png"]
    assert (tmp_path / "denoise_levels.png").stat().st_size > 1000
    report = run_demo(tmp_path, cases=(DemoCase("denoise", 50, 1, "rednet_denoise_blind"),), names=("astronaut",))
    (row,) = report["results"]
    assert row["protocol"]["grey"] == "luma" and row["psnr"] > 20
