"""Tiny carded models saved exactly as the zoo stores them, shared by the product tests (the `tiny_zoo`
fixture in conftest.py builds a zoo of them)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

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
    blind: bool = False,
    degradation: str | None = None,
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
        "file": weights.name, "sha256": sha256(weights), "blind": blind,
        "training": {"command": "tests: random weights", "steps": 0},
        "results": [{"dataset": "none", "task": task, "level": 25, "psnr": 20.0, "ssim": 0.5, "protocol": {}}],
    }
    if degradation is not None:
        card["degradation"] = degradation
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
