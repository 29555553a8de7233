"""bench/dlnet_overhead.py (issue 15): a tiny run end to end. The timings themselves are not tested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from script_loader import load_script

pytestmark = pytest.mark.usefixtures("one_thread")

dlnet_overhead = load_script("dlnet_overhead", "bench")


def test_the_pair_shares_the_weights_and_one_step_is_the_backbone():
    plain, refined, source = dlnet_overhead.build_pair("idn", 2, 1, Path("/nonexistent"))
    assert source.startswith("random")
    y, record = dlnet_overhead.make_input(12, 8, 2, 1.3)
    with torch.no_grad():
        assert torch.equal(refined(y, record=record), plain(y))


def test_the_benchmark_runs_end_to_end_and_writes_json(tmp_path, capsys):
    out = tmp_path / "overhead.json"
    assert dlnet_overhead.main(["--rounds", "1", "--size", "12x8", "--threads", "1", "--weights", "/nonexistent",
                                "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["lr_size"] == "12x8" and result["steps"] == 5
    assert [row["backbone"] for row in result["rows"]] == ["vdsr", "idn"]
    assert all(row["cpu_ratio_median"] > 0 and len(row["wall_ms_all"]["dlnet"]) == 1 for row in result["rows"])
    assert "DL-Net / alone" in capsys.readouterr().out
