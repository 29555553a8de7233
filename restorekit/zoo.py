"""Turn a model argument (registry name, zoo name or weights file) into a ready `Model`, and manage the zoo.

The zoo is two folders of `NAME.safetensors` (fp16) + `NAME.json` (a `restorekit.card.ModelCard`):
- bundled: the models we trained, shipped as package data (`restorekit.weights`; the repository's
  `weights/` folder), so a wheel install finds them;
- the user's: `RESTOREKIT_WEIGHTS`, default `~/.cache/restorekit/weights` (`XDG_CACHE_HOME`), where
  `restorekit zoo import` converts released checkpoints. Never the repository.
A user's model shadows a bundled one of the same name. `RESTOREKIT_BUNDLED=none` hides the bundled
folder (an isolated zoo, e.g. in tests); another path replaces it.

Loading never unpickles arbitrary objects: `.safetensors` is read with safetensors, `.pth`/`.pt` only
through `torch.load(weights_only=True)`, MATLAB `.mat` through scipy/h5py. A file without a card has its
architecture detected from key names and shapes (`models.from_state_dict`, spandrel's approach).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from restorekit.card import ModelCard, Provenance, Result, card_path, read_card, write_card
from restorekit.errors import ModelError, RestorekitError
from restorekit.models import Model, build, from_state_dict, get_architecture, list_models, load_weights

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".mat")


# ---------------------------------------------------------------------------------------------------
# Weights files
# ---------------------------------------------------------------------------------------------------


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors, weights-only PyTorch or MATLAB file, unwrapping 'params'-style nesting."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif path.suffix == ".mat":
            from restorekit.models._matconvnet import read_mat

            state = read_mat(path)
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except RestorekitError:
        raise
    except Exception as err:  # noqa: BLE001 - every failure here means the same thing to the user
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelError(f"{path}: cannot read weights ({type(err).__name__}: {reason[:200]})") from None
    for key in ("params_ema", "params", "state_dict", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    return state


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# The two folders
# ---------------------------------------------------------------------------------------------------


def user_dir() -> Path:
    """The user's zoo: RESTOREKIT_WEIGHTS, else a cache folder (never the repository)."""
    env = os.environ.get("RESTOREKIT_WEIGHTS")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "restorekit" / "weights"


def bundled_dir() -> Path | None:
    """The models shipped with the package (package data), or RESTOREKIT_BUNDLED's folder / none."""
    env = os.environ.get("RESTOREKIT_BUNDLED")
    if env:
        return None if env.lower() == "none" else Path(env).expanduser()
    folder = Path(__file__).resolve().parent / "weights"  # package data (a link to weights/ in the checkout)
    return folder if folder.is_dir() else None


def weights_dirs() -> list[Path]:
    """Where models are looked up, first match wins: the user's folder, then the bundled one."""
    return [d for d in (user_dir(), bundled_dir()) if d is not None]


@dataclass(frozen=True)
class Entry:
    """One installed model: its card, its weights file and which folder it came from."""

    card: ModelCard
    weights: Path
    source: str  # 'user' | 'bundled'


def entries(*, strict: bool = False) -> list[Entry]:
    """Every installed model, sorted by name (user models shadow bundled ones). An unreadable card is
    skipped with a one-line warning (strict: raised), so it cannot break unrelated models."""
    found: dict[str, Entry] = {}
    for folder, source in ((user_dir(), "user"), (bundled_dir(), "bundled")):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            try:
                card = read_card(path)
            except ModelError as err:
                if strict:
                    raise
                print(f"restorekit: warning: skipping {err}", file=sys.stderr)
                continue
            found.setdefault(card.name, Entry(card, folder / (card.file or f"{card.name}.safetensors"), source))
    return sorted(found.values(), key=lambda e: e.card.name)


def zoo_cards() -> list[ModelCard]:
    return [e.card for e in entries()]


def _installed(name: str) -> Entry | None:
    return next((entry for entry in entries() if entry.card.name == name), None)


def find(name: str) -> Entry:
    entry = _installed(name)
    if entry is not None:
        return entry
    installed = ", ".join(e.card.name for e in entries()) or \
        f"none installed in {', '.join(str(d) for d in weights_dirs())}"
    raise ModelError(f"no zoo model {name!r}; installed: {installed}")


def weights_status(entry: Entry) -> str:
    """'ok', 'missing' or 'sha256 mismatch': the check loading would do, without building the model."""
    if not entry.weights.is_file():
        return f"missing ({entry.weights})"
    if entry.card.sha256 is None:
        return "no sha256 in the card (integrity unchecked)"
    if sha256(entry.weights) != entry.card.sha256:
        return "sha256 mismatch (file changed or corrupt)"
    return f"ok ({entry.weights})"


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


def load_carded(weights: Path, card: ModelCard) -> Model:
    """Build the card's architecture and load its weights (stored fp16, run fp32), checking the hash."""
    if card.sha256 and sha256(weights) != card.sha256:
        raise ModelError(f"{weights}: sha256 does not match its model card (file changed or corrupt)")
    model = build(card.architecture, **card.arguments)
    load_weights(model.module, read_weights(weights), f"{weights}: {card.architecture} {card.arguments}")
    model.name, model.card = card.name, card
    return model.eval()


def load_model(name_or_path: str, **arguments) -> Model:
    """A registered model name (built with `arguments`, e.g. scale), a zoo name or a weights file."""
    if name_or_path in list_models():
        return build(name_or_path, **arguments)
    entry = _installed(name_or_path)
    if entry is not None:
        return load_carded(entry.weights, entry.card)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        zoo = ", ".join(e.card.name for e in entries()) or "none installed"
        raise ModelError(f"unknown model {name_or_path!r}: not a registered model ({', '.join(list_models())}), "
                         f"not in the zoo ({zoo}) and no such file")
    if card_path(path).is_file() and path.suffix == ".safetensors":
        return load_carded(path, read_card(card_path(path)))
    model = from_state_dict(read_weights(path), str(path), **arguments)
    model.name = path.stem
    return model


# ---------------------------------------------------------------------------------------------------
# Writing into a zoo
# ---------------------------------------------------------------------------------------------------


def save_weights(model_state: dict[str, torch.Tensor], target: Path, card: ModelCard) -> Path:
    """fp16 safetensors + its validated card (with file and sha256), both written atomically."""
    from safetensors.torch import save

    from restorekit.atomic import write_bytes

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model_state.items()}
    write_bytes(target, save(state, metadata={"architecture": card.architecture, "name": card.name}))
    final = card.model_copy(update={"file": target.name, "sha256": sha256(target), "dtype": "float16"})
    write_card(card_path(target), final)
    return target


def publish(source: Path, name: str, card_updates: dict | None = None, folder: Path | None = None) -> Path:
    """Copy a trained carded model (the trainer's OUT/final.safetensors) into a zoo folder as NAME."""
    card = read_card(card_path(source))
    card = ModelCard.model_validate({**card.to_json(), **(card_updates or {}), "name": name})
    folder = folder or user_dir()
    return save_weights(read_weights(source), folder / f"{name}.safetensors", card)


# What `zoo import` measures when the benchmark data is present: a quick, standard sanity figure per task
# (small sets; the full tables are `restorekit eval` runs in docs/BENCHMARKS.md). (grey set, colour set, level)
IMPORT_BENCHMARKS: dict[str, tuple[str, str, float | None]] = {
    "denoise": ("Set12", "McMaster", 25.0),
    "sr": ("Set5", "Set5", None),
    "jpeg": ("classic5", "LIVE1", 20.0),
}


def measure(model: Model, task: str, name: str) -> list[Result]:
    """The task's import benchmark at every scale of the model, through `restorekit.evaluation` (default
    protocol of the task, recorded); empty when the data or a benchmark for the task is absent."""
    from restorekit import evaluation, paths

    root = paths.data_root()
    if root is None or task not in IMPORT_BENCHMARKS:
        return []
    grey_set, colour_set, level = IMPORT_BENCHMARKS[task]
    dataset = grey_set if model.info.in_channels == 1 else colour_set
    folder = root / "test" / dataset
    if not folder.is_dir():
        return []
    results = []
    for scale in (model.info.scales if task == "sr" else (None,)):
        setup = evaluation.default_setup(task, scale=scale, level=level)
        outcome = evaluation.evaluate(model, folder, setup, device="cpu")
        results.append(Result(dataset=dataset, task=task, level=level, scale=scale, psnr=round(outcome["psnr"], 3),
                              ssim=round(outcome["ssim"], 4), n_images=outcome["n_images"],
                              psnr_b=round(outcome["psnr_b"], 3) if "psnr_b" in outcome else None,
                              protocol=outcome["protocol"],
                              command=f"restorekit eval --model {name} --dataset {dataset} --task {task}"
                              + (f" --scale {scale}" if scale else "") + (f" --level {level:g}" if level else "")))
    return results


def import_checkpoint(path: str | Path, name: str, *, source: str | None = None, license: str = "none stated",
                      task: str | None = None, folder: Path | None = None, measure_results: bool = True,
                      arguments: dict | None = None) -> tuple[Path, ModelCard]:
    """`restorekit zoo import`: detect, convert and store a released checkpoint in the user's zoo with a
    card holding its provenance (source, license, the original file's sha256) and, when the benchmark data
    is present, results measured on import."""
    path = Path(path).expanduser()
    model = from_state_dict(read_weights(path), str(path), **(arguments or {}))
    arch = get_architecture(model.info.name)
    folder = folder or user_dir()
    target = folder / f"{name}.safetensors"
    if target.exists():
        raise ModelError(f"{target}: a zoo model named {name!r} exists already (choose another --name)")
    task = task or next((t for t in model.info.tasks if t not in ("any", "restore")), model.info.task)
    card = ModelCard(
        name=name, architecture=arch.name, arguments=model.info.arguments, family=arch.family, task=task,
        description=f"{arch.summary or arch.name}, converted from a released checkpoint",
        scales=list(model.info.scales) if max(model.info.scales) > 1 else None, license=license,
        provenance=Provenance(source=source or str(path), license=license, original_file=path.name,
                              original_sha256=sha256(path),
                              imported_with=shlex.join(["restorekit", "zoo", "import", str(path), "--name", name])),
    )
    if measure_results:
        card = card.model_copy(update={"results": measure(model, task, name)})
    return save_weights(model.module.state_dict(), target, card), card
