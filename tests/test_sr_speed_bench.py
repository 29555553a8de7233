"""bench/sr_speed.py (issue 14): its official-structure CARN / CARN-M are the reference code's networks
(field-conventions 3.2: the parameter printouts, the released key layout) and compute what ours compute, so
timing them side by side compares one network in two module layouts. The timings themselves are not tested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from script_loader import load_script

from restorekit.zoo import read_weights

pytestmark = pytest.mark.usefixtures("one_thread")

sr_speed = load_script("sr_speed", "bench")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_official_structure_has_the_reference_codes_parameter_counts():
    """field-conventions 3.2: CARN multi-scale 1,591,963 (the printout in CARN-pytorch issue #6); CARN-M
    414,811 (reference-weights README: carn_m.pth), both with the two frozen mean-shift convs (24 values)."""
    with torch.device("meta"):
        assert _count(sr_speed.OfficialCARN(efficient=False)) == 1_591_963
        assert _count(sr_speed.OfficialCARN(efficient=True)) == 414_811


def test_released_carn_m_loads_strictly_into_the_official_structure_and_matches_ours(reference_weights):
    """carn_m.pth's 58 keys are exactly the official structure's; ours (converted) agrees at x2/x3/x4."""
    weights = reference_weights / "carn_m.pth"
    if not weights.is_file():
        pytest.skip(f"{weights} absent")
    assert set(read_weights(weights)) == set(sr_speed.OfficialCARN(efficient=True).state_dict())
    pair = sr_speed.build_pair("carn_m", weights)
    assert pair.weights == "released carn_m.pth"
    image = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for scale in (2, 3, 4):
            assert sr_speed.check_agreement(pair, image, scale) < sr_speed.AGREEMENT


@pytest.mark.parametrize("name", ["carn", "carn_m"])
def test_random_official_weights_convert_to_ours_and_agree(name):
    """No file (CARN never had one): random official-structure weights through our converter."""
    pair = sr_speed.build_pair(name, Path("/nonexistent/carn_m.pth"))
    assert pair.ours.info.name == name and pair.ours.info.arguments["variant"] == "eccv"
    image = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        for scale in (2, 3, 4):
            assert sr_speed.check_agreement(pair, image, scale) < sr_speed.AGREEMENT


def test_a_structure_that_differs_stops_the_benchmark():
    pair = sr_speed.build_pair("carn_m", Path("/nonexistent/carn_m.pth"))
    with torch.no_grad():
        pair.official.exit.bias.add_(0.01)
    with torch.inference_mode(), pytest.raises(sr_speed.RestorekitError, match="differ by"):
        sr_speed.check_agreement(pair, torch.rand(1, 3, 8, 8), 2)


def test_speed_verdict_reads_the_per_round_ratios():
    assert sr_speed.speed_verdict(0.96, 1.04).startswith("no slower")  # straddles 1: a tie
    assert sr_speed.speed_verdict(0.90, 0.98) == "ours faster in every round"
    assert sr_speed.speed_verdict(1.02, 1.10) == "ours SLOWER in every round"


def test_the_benchmark_runs_end_to_end_and_writes_json(tmp_path, capsys):
    """A tiny run: six subjects, Mult-Adds from restorekit.profile (both structures the same count), the LR
    conv's from the flop counter (64 x 64 x 9 per pixel), the ratios and the CARN target in the JSON."""
    out = tmp_path / "speed.json"
    assert sr_speed.main(["--rounds", "2", "--size", "12x8", "--threads", "1", "--weights", "/nonexistent.pth",
                          "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["subject"]: row for row in result["rows"]}
    assert len(rows) == 6 and result["lr_size"] == "12x8" and result["scale"] == 4
    assert rows["carn ours"]["mult_adds"] == rows["carn official"]["mult_adds"] > rows["carn_m ours"]["mult_adds"]
    assert rows["conv 64->64 3x3 at LR 12x8"]["mult_adds"] == 64 * 64 * 9 * 12 * 8
    assert rows["conv 64->64 3x3 at LR 12x8"]["cpu_fraction_of_lr_conv"] == pytest.approx(1.0)
    assert all(len(row["cpu_ms_all"]) == 2 for row in rows.values())
    verdicts = {v["model"]: v for v in result["verdicts"]}
    assert verdicts["carn"]["target_fraction"] == 0.60 and verdicts["carn_m"]["target_fraction"] is None
    assert "ours / official" in capsys.readouterr().out
