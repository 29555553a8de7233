"""Turn a model argument (registry name, zoo name or weights path) into a ready nn.Module.

Zoo models live in `weights/NAME.safetensors` (fp16) with a model card `weights/NAME.json`:

    {"name", "family", "architecture": registry name, "arguments": {...}, "task",
     "levels": [start, end] or "scales": [...], "strength_curve": {...} (modulated models),
     "file", "sha256", "training": {"config", "command", "data", "steps", "hardware"},
     "results": [{"dataset", "task", "level", "psnr", "ssim", "protocol": {...}}]}

Any safetensors file with such a card beside it (same stem, `.json`) loads the same way.
Loading never unpickles arbitrary objects: `.safetensors` is read with safetensors; a legacy `.pth`/`.pt`
only through `torch.load(weights_only=True)`. A weights file without a card has its architecture
detected from the state dict's key names and shapes (spandrel's approach).
"""

from __future__ import annotations

import hashlib
import json
import os
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


def weights_dir() -> Path:
    """The model zoo folder: RESTOREKIT_WEIGHTS, else the repository's `weights/`."""
    return Path(os.environ.get("RESTOREKIT_WEIGHTS", Path(__file__).resolve().parent.parent / "weights"))


def card_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def read_card(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: unreadable model card ({err})") from err


def zoo_cards() -> list[dict]:
    """Every model card in the zoo folder, sorted by name."""
    folder = weights_dir()
    cards = [read_card(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted(cards, key=lambda c: c.get("name", ""))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_carded(weights: Path, card: dict) -> nn.Module:
    """Build the card's architecture and load its weights (stored fp16, run fp32), checking the hash."""
    expected = card.get("sha256")
    if expected and sha256(weights) != expected:
        raise ModelError(f"{weights}: sha256 does not match its model card (file changed or corrupt)")
    model = create_model(card["architecture"], **card.get("arguments", {}))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_state_dict(weights).items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ModelError(f"{weights}: weights do not fit {card['architecture']} {card.get('arguments', {})}") from err
    model.card = {**card, "_weights_path": str(weights)}
    return model.eval()


def load_model(name_or_path: str, **kwargs) -> nn.Module:
    """A registered model name (built with kwargs, e.g. scale), a zoo name or a weights file, in eval mode."""
    if name_or_path in list_models():
        return create_model(name_or_path, **kwargs).eval()
    zoo_weights = weights_dir() / f"{name_or_path}.safetensors"
    if zoo_weights.is_file() and card_path(zoo_weights).is_file():
        return load_carded(zoo_weights, read_card(card_path(zoo_weights)))
    path = Path(name_or_path).expanduser()
    if not path.exists():
        zoo = ", ".join(c.get("name", "?") for c in zoo_cards()) or "none installed"
        raise ModelError(f"unknown model {name_or_path!r}: not a registered model ({', '.join(list_models())}), "
                         f"not in the zoo ({zoo}) and no such file")
    if path.suffix == ".safetensors" and card_path(path).is_file():
        return load_carded(path, read_card(card_path(path)))
    state = load_state_dict(path)
    for name, detect in DETECTORS:
        arguments = detect(state)
        if arguments is not None:
            model = create_model(name, **arguments)
            model.load_state_dict(state)
            return model.eval()
    raise ModelError(f"{path}: could not recognise the architecture from its {len(state)} tensors")


def publish(source: Path, name: str, card_updates: dict | None = None, folder: Path | None = None) -> Path:
    """Copy a trained carded model into the zoo as NAME: fp16 safetensors, card with file and sha256.

    `source` is a safetensors file with its card beside it (the trainer's OUT/final.safetensors).
    Writes are atomic; an existing zoo entry of the same name is replaced.
    """
    from safetensors.torch import save_file

    from restorekit.cli.common import write_json

    card = {k: v for k, v in read_card(card_path(source)).items() if not k.startswith("_")}
    card.update(card_updates or {})
    folder = folder or weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_state_dict(source).items()}
    target = folder / f"{name}.safetensors"
    tmp = target.with_name(f".{target.name}.tmp")
    save_file(state, str(tmp), metadata={"architecture": card["architecture"], "name": name})
    tmp.replace(target)
    card.update({"name": name, "file": target.name, "sha256": sha256(target), "dtype": "float16"})
    write_json(card_path(target), card)
    return target
