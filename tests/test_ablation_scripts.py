"""The ablation studies as data (scripts/ablation.py): RED-Net's Fig. 6 skip study and MBN's Table 1, read back
from run logs into a table, a figure and the paper's claim stated either way."""

from __future__ import annotations

import dataclasses
import json

from script_loader import load_script as _script


def _fake_run(folder, psnr_by_level: dict[str, float], steps: int = 20) -> None:
    folder.mkdir(parents=True)
    rows = [{"step": s, "loss": 1.0 / s, "loss_avg": 1.0 / s} for s in range(10, steps + 1, 10)]
    rows[-1]["val_psnr"] = psnr_by_level
    (folder / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (folder / "final.safetensors").write_bytes(b"")


def test_rednet_skip_study_states_whether_the_gap_grows_with_depth(tmp_path):
    """Fig. 6: skips give higher validation PSNR, and the gap grows from 20 to 30 layers."""
    study = dataclasses.replace(_script("rednet_ablation").REDNET, runs=tmp_path / "runs", figures=tmp_path / "img")
    psnr = {"10 layers, no skips": 23.5, "20 layers, no skips": 22.0, "30 layers, no skips": 14.0,
            "20 layers, skips": 24.0, "30 layers, skips": 24.5}
    for label, value in psnr.items():
        _fake_run(study.run_folder("skips", label), {"noise:sigma=70": value})
    summary = study.run_study("skips", plot_only=True)
    assert "20 layers +2.00 dB, 30 layers +10.50 dB" in summary and "holds at this budget" in summary
    assert (tmp_path / "img" / "rednet_skips.png").is_file()
    assert study.run_folder("skips", "30 layers, skips").name == "depth_30"  # named by its overrides
    # the stride-2 study trains every variant on 80 px patches: unpadded RED30 with strides at conv5 + conv9 needs 75
    assert study.run_folder("down", "no down-sampling").name == "depth_30_data_train_patch_80"


def test_rednet_level_study_trains_from_its_own_config_and_judges_table_3s_claim(tmp_path):
    """Table 3: one blind RED30 within 0.3 dB of per-level RED30s (here sigma 50 specialises by 0.5 dB)."""
    study = dataclasses.replace(_script("rednet_ablation").REDNET, runs=tmp_path / "runs", figures=tmp_path / "img")
    blind = {"noise:sigma=10": 33.0, "noise:sigma=50": 25.5}
    runs = {"blind, sigma 10/30/50/70": blind, "sigma 10 only": {"noise:sigma=10": 33.2, "noise:sigma=50": 20.0},
            "sigma 50 only": {"noise:sigma=10": 28.0, "noise:sigma=50": 26.0}}
    for label, psnr in runs.items():
        _fake_run(study.run_folder("levels", label), psnr)
    summary = study.run_study("levels", plot_only=True)
    assert "sigma 10 +0.20 dB, sigma 50 +0.50 dB" in summary and "does NOT hold" in summary
    command = study.train_command("levels", "sigma 50 only")
    assert command[2].endswith("configs/rednet/denoise_level_study.yaml")  # the study's own base config
    assert command[-2:] == ["--set", "data.train.levels=['noise:sigma=50']"]
    # its blind run (no overrides) has a folder of its own, apart from the sigma-70 studies' base
    assert study.run_folder("levels", "blind, sigma 10/30/50/70").parent.name == "denoise_level_study"


def test_mbn_component_study_reports_per_factor_and_the_claim_either_way(tmp_path):
    """Table 1: with TV + GAP + fusion the block is best on every factor (here made to fail on one)."""
    module = _script("mbn_ablation")
    study = dataclasses.replace(module.MBN, runs=tmp_path / "runs", figures=tmp_path / "img")
    base = {"haze": 20.0, "rain": 25.0, "jpeg": 30.0, "blur": 22.0}
    for i, label in enumerate(module.STUDIES["components"]):
        scores = {k: v + i * 0.1 for k, v in base.items()}
        if label == module.ALL:
            scores["jpeg"] = 29.0
        _fake_run(study.run_folder("components", label), scores)
    summary = study.run_study("components", plot_only=True)
    assert "| blur last | haze last | jpeg last | rain last |" in summary.splitlines()[0]
    assert "best on 3 of 4 factors (blur, haze, rain)" in summary and "does NOT hold" in summary
    command = study.train_command("components", "TV")
    assert command[-4:] == ["--set", "model.args.attention=tv", "--set", "model.args.second_op=conv"]


def test_shdd_table_scores_every_row_on_the_distorted_images_and_says_what_was_left_out():
    """Table 7.1 pattern: an SHDD image whose regions all drew identity is the clean image (infinite input PSNR).
    Every row is scored on the same distorted images (the Input row's mean is then defined), and the models also
    over all images; untrained rows say so."""
    module = _script("shdd_table")
    inputs = {"images": [{"name": "a", "psnr": float("inf"), "ssim": 1.0}, {"name": "b", "psnr": 20.0, "ssim": 0.5},
                         {"name": "c", "psnr": 30.0, "ssim": 0.7}]}
    model = {"images": [{"name": "a", "psnr": 50.0, "ssim": 0.99}, {"name": "b", "psnr": 22.0, "ssim": 0.6},
                        {"name": "c", "psnr": 32.0, "ssim": 0.8}]}
    assert module.finite_mean(inputs, "psnr") == (25.0, 1)
    text = module.table({"Input": {"easy": inputs}, "MEPSNet": {"easy": model}, "RIDNet": {}}, 3,
                        dict.fromkeys(module.LEVELS, inputs))
    assert "| Input | 25.00 / 0.6000 (1 undistorted left out) |" in text
    assert "| MEPSNet | 27.00 / 0.7000; all 34.67 / 0.7967 | not trained | not trained | 34.23 / 33.47 / 32.71 |" in text
    assert "| RIDNet | not trained | not trained | not trained | 34.19 / 32.94 / 32.30 |" in text


def test_mepsnet_expert_study_states_both_table_7_3_claims(tmp_path):
    """Table 7.3: sharing helps one expert (+4.19 dB in the thesis), three shared experts beat one (+0.74)."""
    module = _script("mepsnet_ablation")
    study = dataclasses.replace(module.MEPSNET, runs=tmp_path / "runs", figures=tmp_path / "img",
                                reuse={"3 experts, shared (MEPSNet)": tmp_path / "recipe"})  # the recipe's own run
    psnr = {"1 expert, no sharing": 27.0, "1 expert, shared": 28.0, "3 experts, shared (MEPSNet)": 27.5,
            "5 experts, shared": 28.2}
    for label, value in psnr.items():
        _fake_run(study.run_folder("experts", label), {"shdd:level=moderate": value})
    summary = study.run_study("experts", plot_only=True)
    assert "sharing at one expert +1.00 dB (thesis +4.19): holds" in summary
    assert "3 vs 1 shared experts -0.50 dB (thesis +0.74): does NOT hold" in summary
    assert study.run_folder("experts", "1 expert, no sharing").name == "experts_1_share_false"
    assert study.run_folder("experts", "3 experts, shared (MEPSNet)") == tmp_path / "recipe"  # read, not retrained
    assert module.MEPSNET.reuse["3 experts, shared (MEPSNet)"].parts[-2:] == ("mepsnet", "moderate_cpu")
    short = dataclasses.replace(study, steps=1000)
    assert short.run_folder("experts", "1 expert, shared").name == "experts_1_train_steps_1000"
    assert "train.steps=1000" in short.train_command("experts", "1 expert, shared")


def test_mepsnet_sharing_study_tests_table_7_3_at_the_thesis_expert_depth(tmp_path):
    """Table 7.3's sharing row (+4.19 dB) needs an expert deeper than its bank: 3 SRIR x 12 blocks, 16 templates."""
    module = _script("mepsnet_ablation")
    study = dataclasses.replace(module.MEPSNET, runs=tmp_path / "runs", figures=tmp_path / "img")
    for label, value in {"1 expert 3x12, no sharing": 26.0, "1 expert 3x12, shared": 25.75}.items():
        _fake_run(study.run_folder("sharing", label), {"shdd:level=moderate": value})
    summary = study.run_study("sharing", plot_only=True)
    assert "sharing at one expert of the thesis's depth -0.25 dB (thesis +4.19): does NOT hold" in summary
    command = study.train_command("sharing", "1 expert 3x12, shared")
    assert {"model.args.srir=3", "model.args.blocks=12", "model.args.experts=1"} <= set(command)
