"""`restorekit adafm sweep|fit-lambda` on a tiny carded AdaFM model (the product's strength slider)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from restorekit.cli import main
from restorekit.models import create_model
from restorekit.zoo import load_model, publish

ARGS = {"blocks": 2, "features": 8, "kernel_size": 1}


@pytest.fixture
def adafm_zoo_and_images(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = create_model("adafm_net", **ARGS)
    for p in model.adafm_parameters():
        p.data.normal_(0, 0.05)
    run = tmp_path / "run"
    run.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run / "final.safetensors"))
    (run / "final.json").write_text(json.dumps({"name": "final", "architecture": "adafm_net", "arguments": ARGS,
                                                "task": "denoise"}))
    zoo = tmp_path / "zoo"
    publish(run / "final.safetensors", "tiny_adafm", {"family": "adafm", "task": "denoise", "levels": [15, 75]}, zoo)
    monkeypatch.setenv("RESTOREKIT_WEIGHTS", str(zoo))
    images = tmp_path / "val"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(60, 200, (32, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
    return zoo, images


def test_published_model_is_fp16_with_a_matching_hash(adafm_zoo_and_images):
    zoo, _ = adafm_zoo_and_images
    card = json.loads((zoo / "tiny_adafm.json").read_text())
    assert card["dtype"] == "float16" and len(card["sha256"]) == 64 and card["file"] == "tiny_adafm.safetensors"
    model = load_model("tiny_adafm")
    assert model.info.family == "adafm"


def test_sweep_and_fit_lambda_write_the_curve_into_the_card(adafm_zoo_and_images, tmp_path):
    zoo, images = adafm_zoo_and_images
    out = tmp_path / "sweep.json"
    assert main(["adafm", "sweep", "--model", "tiny_adafm", "--dataset", str(images), "--task", "denoise",
                 "--level", "45", "--grid-step", "0.25", "--json", str(out)]) == 0
    sweep = json.loads(out.read_text())
    assert sweep["strengths"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(sweep["psnr"]) == 5
    assert sweep["best_strength"] in sweep["strengths"]
    assert main(["adafm", "fit-lambda", "--model", "tiny_adafm", "--dataset", str(images), "--task", "denoise",
                 "--levels", "30,45,60", "--grid-step", "0.25", "--order", "1", "--write-card"]) == 0
    card = json.loads((zoo / "tiny_adafm.json").read_text())
    curve = card["strength_curve"]
    assert curve["start"] == 15 and curve["end"] == 75 and len(curve["coefficients"]) == 2
    assert [p[0] for p in curve["points"]] == [15, 30, 45, 60, 75]
    # The card says which images the curve was fitted on (they must not be test images).
    assert curve["fitted_on"]["dataset"] == str(images) and curve["fitted_on"]["levels"] == [30, 45, 60]
    assert curve["fitted_on"]["pinned_ends"] is True
    # Refitting from the saved sweeps measures nothing again and gives the same curve.
    saved = tmp_path / "fit.json"
    assert main(["adafm", "fit-lambda", "--model", "tiny_adafm", "--dataset", str(images), "--task", "denoise",
                 "--levels", "30,45,60", "--grid-step", "0.25", "--order", "1", "--json", str(saved)]) == 0
    assert main(["adafm", "fit-lambda", "--model", "tiny_adafm", "--dataset", str(images), "--task", "denoise",
                 "--sweeps", str(saved), "--order", "1", "--write-card"]) == 0
    assert json.loads((zoo / "tiny_adafm.json").read_text())["strength_curve"] == curve
    assert main(["adafm", "fit-lambda", "--model", "tiny_adafm", "--dataset", str(images), "--task", "denoise",
                 "--sweeps", str(out)]) == 2  # a sweep file, not a fit-lambda file of this model
    # The card changed but the weights did not: the hash still verifies.
    assert load_model("tiny_adafm").card.strength_curve == curve
    # Several levels in one sweep, with the PSNR-versus-lambda plot (the paper's smoothness figure).
    plot = tmp_path / "sweeps.png"
    assert main(["adafm", "sweep", "--model", "tiny_adafm", "--dataset", str(images), "--task", "denoise",
                 "--level", "30,60", "--grid-step", "0.5", "--json", str(out), "--plot", str(plot)]) == 0
    sweeps = json.loads(out.read_text())["sweeps"]
    assert [s["level"] for s in sweeps] == [30, 60] and plot.read_bytes()[:4] == b"\x89PNG"


def test_a_non_modulated_model_is_refused(adafm_zoo_and_images):
    _, images = adafm_zoo_and_images
    assert main(["adafm", "sweep", "--model", "identity", "--dataset", str(images), "--task", "denoise",
                 "--level", "25"]) == 2


def test_eval_sets_the_strength_from_the_cards_curve(adafm_zoo_and_images, tmp_path):
    zoo, images = adafm_zoo_and_images
    card_file = zoo / "tiny_adafm.json"
    card = json.loads(card_file.read_text())
    card["strength_curve"] = {"start": 15, "end": 75, "kind": "polynomial", "coefficients": [1 / 60, -0.25],
                              "points": []}
    card_file.write_text(json.dumps(card))
    out = tmp_path / "r.json"
    assert main(["eval", "--model", "tiny_adafm", "--dataset", str(images), "--task", "denoise", "--level", "45",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["strength"] == pytest.approx(0.5)
    assert main(["eval", "--model", "tiny_adafm", "--dataset", str(images), "--task", "denoise", "--level", "45",
                 "--strength", "0.2", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["strength"] == pytest.approx(0.2)
    assert main(["eval", "--model", "tiny_adafm", "--dataset", str(images), "--task", "denoise", "--level", "90"]) == 2
