"""Turn a model argument (registry name or weights path) into a ready nn.Module.

Loading never unpickles arbitrary objects: `.safetensors` is read with safetensors; a legacy `.pth`/`.pt`
only through `torch.load(weights_only=True)`. A weights file without a model card has its architecture
detected from the state dict's key names and shapes (spandrel's approach).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from restorekit.errors import ModelError
from restorekit.models import create_model, list_models
from restorekit.models.dncnn import detect_dncnn

# (registry name, detector) pairs tried in order on card-less weights files.
DETECTORS: list[tuple[str, Callable[[dict], dict | None]]] = [("dncnn", detect_dncnn)]


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors or (weights-only) PyTorch file, unwrapping common 'params'-style nesting."""
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure here means the same thing to the user
        raise ModelError(f"{path}: cannot read weights ({type(err).__name__}: {err})") from err
    for key in ("params_ema", "params", "state_dict", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    return state


def load_model(name_or_path: str, **kwargs) -> nn.Module:
    """A registered model name (built with kwargs, e.g. scale) or a weights file, in eval mode."""
    if name_or_path in list_models():
        return create_model(name_or_path, **kwargs).eval()
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise ModelError(f"unknown model {name_or_path!r}: not a registered model ({', '.join(list_models())}) "
                         "and no such file")
    state = load_state_dict(path)
    for name, detect in DETECTORS:
        arguments = detect(state)
        if arguments is not None:
            model = create_model(name, **arguments)
            model.load_state_dict(state)
            return model.eval()
    raise ModelError(f"{path}: could not recognise the architecture from its {len(state)} tensors")
