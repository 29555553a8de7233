"""The denoising evaluation path proven against the field: DnCNN-25 reference weights (KAIR release).

Protocol (KAIR): per image np.random.seed(0), float Gaussian noise sigma 25/255 added to the [0, 1]
image, not clipped or quantized; output clamped and rounded to uint8; PSNR on grey values, no crop.
Published: BSD68 29.23 dB, Set12 30.44 dB (30.43 measured with the same weights, see the README there).
"""

from __future__ import annotations

import json

import pytest
import torch

from restorekit.cli import main
from restorekit.models import create_model
from restorekit.zoo import load_model


def test_dncnn_has_17_layers_and_predicts_the_noise():
    model = create_model("dncnn")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 17 and convs[0].in_channels == 1 and convs[-1].out_channels == 1
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(model(x), x)  # output = input - predicted noise


@pytest.mark.data
@pytest.mark.parametrize("dataset,expected", [("Set12", 30.43),
                                              pytest.param("BSD68", 29.23, marks=pytest.mark.full_set)])
def test_reference_dncnn25_scores_through_restorekit_eval(reference_weights, data_dir, dataset, expected, tmp_path):
    weights = reference_weights / "dncnn_25.pth"
    if not weights.is_file():
        pytest.skip(f"{weights} absent")
    model = load_model(str(weights))
    assert model.info.arguments == {"in_channels": 1, "depth": 17, "features": 64, "batch_norm": False}
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(weights), "--dataset", str(data_dir / "test" / dataset),
                 "--task", "denoise", "--level", "25", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["psnr"] == pytest.approx(expected, abs=0.03)
    assert result["protocol"]["y_channel"] is False and result["protocol"]["crop_border"] == 0
    assert result["protocol"]["seed_mode"] == "fixed" and result["protocol"]["degradation"] == "noise:sigma=25"
