"""`restorekit zoo list|show` and the tiny carded models the product tests share (`save_zoo_model`).

The real zoo (weights/) is filled later by training; these tests build their own fp16 safetensors +
card in tmp_path and point RESTOREKIT_WEIGHTS at it, exactly as a trained model would be installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from restorekit.cli import main
from restorekit.models import create_model
from restorekit.modulation import StrengthCurve
from restorekit.zoo import sha256


def save_zoo_model(
    folder: Path,
    name: str = "tiny-adafm",
    architecture: str = "adafm_net",
    arguments: dict | None = None,
    *,
    task: str = "denoise",
    family: str = "adafm",
    levels: tuple[float, float] | None = (15, 75),
    curve: bool = True,
    seed: int = 0,
) -> Path:
    """A small model saved as the zoo stores them (fp16 safetensors + JSON card with sha256).

    AdaFM layers are zero-initialised (strength has no effect); they are randomised here so that the
    strength slider visibly changes the output, as it does for a trained model.
    """
    from safetensors.torch import save_file

    arguments = {"blocks": 2, "features": 8} if arguments is None and architecture == "adafm_net" else arguments or {}
    torch.manual_seed(seed)
    model = create_model(architecture, **arguments)
    if architecture == "adafm_net":
        lively_adafm(model)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.safetensors"
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(weights))
    card = {
        "name": name, "family": family, "architecture": architecture, "arguments": arguments, "task": task,
        "file": weights.name, "sha256": sha256(weights),
        "training": {"command": "tests: random weights", "steps": 0},
        "results": [{"dataset": "none", "task": task, "level": 25, "psnr": 20.0, "ssim": 0.5, "protocol": {}}],
    }
    if levels is not None:
        card["levels"] = list(levels)
        if curve:
            card["strength_curve"] = StrengthCurve.linear(*levels).to_dict()
    (folder / f"{name}.json").write_text(json.dumps(card))
    return weights


def lively_adafm(model: torch.nn.Module) -> torch.nn.Module:
    """Random AdaFM-Net weights whose output is in range (std ~0.2 around 0.5), depends on the input and
    moves with strength, with O(1) activations like a trained network's.

    The paper's init (kaiming x 0.1, zero-initialised AdaFM) gives a near-zero output that strength does
    not change, which would make tests of the slider, half precision or parity pass vacuously; plain
    kaiming explodes through the residual blocks (activations in the hundreds), which no trained model does.
    """
    for module in model.modules():
        if hasattr(module, "delta"):
            torch.nn.init.normal_(module.delta.weight, std=0.3)
            torch.nn.init.normal_(module.delta.bias, std=0.05)
        elif isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
            module.weight.data *= 0.5
    model.hr_conv1.weight.data *= 2.0
    model.hr_conv1.bias.data.fill_(0.5)
    return model


@pytest.fixture
def tiny_zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    zoo = tmp_path / "zoo"
    save_zoo_model(zoo)
    save_zoo_model(zoo, "tiny-dncnn", "dncnn", {"in_channels": 3, "depth": 3, "features": 8},
                   task="denoise", family="dncnn", levels=(25, 25), curve=False)
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(zoo))
    return zoo


def test_zoo_list_json_has_the_documented_keys(tiny_zoo, capsys):
    assert main(["zoo", "list", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in cards] == ["tiny-adafm", "tiny-dncnn"]
    for card in cards:
        for key in ("name", "family", "task", "file", "sha256", "results"):
            assert card[key] is not None, key
        assert card["levels"] is not None
        assert len(card["sha256"]) == 64
    assert cards[0]["strength_curve"]["start"] == 15


def test_zoo_list_table_and_show(tiny_zoo, capsys):
    assert main(["zoo", "list"]) == 0
    table = capsys.readouterr().out
    assert "tiny-adafm" in table and "15..75" in table and "lambda(level)" in table
    assert main(["zoo", "show", "tiny-adafm"]) == 0
    shown = capsys.readouterr().out
    assert "adafm_net" in shown and "weights: ok" in shown and "tests: random weights" in shown


def test_zoo_show_reports_a_changed_weights_file(tiny_zoo, capsys):
    weights = tiny_zoo / "tiny-dncnn.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    assert main(["zoo", "show", "tiny-dncnn"]) == 0
    assert "sha256 mismatch" in capsys.readouterr().out


def test_zoo_empty_folder_and_unknown_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(tmp_path))
    assert main(["zoo", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["zoo", "show", "nope"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"restorekit: error: no zoo model 'nope'; installed: none installed in {tmp_path}"]
