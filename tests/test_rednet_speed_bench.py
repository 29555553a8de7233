"""bench/rednet_speed.py (issue 16): a tiny run end to end. The timings themselves are not tested."""

from __future__ import annotations

import json

import pytest
from script_loader import load_script

pytestmark = pytest.mark.usefixtures("one_thread")

rednet_speed = load_script("rednet_speed", "bench")


def test_every_paper_variant_is_timed_against_the_plain_net_and_written(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert rednet_speed.main(["--size", "96x80", "--depth", "20", "--features", "4", "--rounds", "1",
                              "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [row["variant"] for row in result["rows"]] == ["plain", "conv1", "conv5", "conv9", "conv5+conv9"]
    assert result["rows"][0]["speedup_median"] == 1.0  # plain against itself
    assert result["rows"][1]["paper_speedup"] == pytest.approx(3.17 / 0.84)  # Sec. 4.5: conv1, ~4x
    assert "conv5+conv9" in capsys.readouterr().out
