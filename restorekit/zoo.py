"""Turn a model argument (registry name, zoo name or weights file) into a ready `Model`, and manage the zoo.

The zoo is two folders of `NAME.safetensors` (fp16) + `NAME.json` (a `restorekit.card.ModelCard`):
- bundled: the models we trained, shipped as package data (`restorekit.weights`; the repository's
  `weights/` folder), so a wheel install finds them;
- the user's: `RESTOREKIT_WEIGHTS`, default `~/.cache/restorekit/weights` (`XDG_CACHE_HOME`), where
  `restorekit zoo import` converts released checkpoints. Never the repository.
A user's model shadows a bundled one of the same name. `RESTOREKIT_BUNDLED=none` hides the bundled
folder (an isolated zoo, e.g. in tests); another path replaces it.

Safe weights. A weights file is data, never code:
- `.safetensors` is read with safetensors (a JSON header and raw tensor bytes; what the zoo stores);
- `.pth`/`.pt` (released checkpoints) only through `torch.load(weights_only=True)`, whose unpickler
  accepts tensors, containers and numbers and nothing else; a file holding any other pickled object is
  refused with one line of ours, never run and never "re-run with weights_only=False";
- MATLAB `.mat` through scipy/h5py, which parse arrays and never unpickle;
- any other suffix is refused. Whatever the reader, only a flat dict of string-keyed real tensors passes.
A file without a card has its architecture detected from key names and shapes (`models.from_state_dict`,
spandrel's approach); a card's arguments are checked against the file's shapes on the meta device before
the model is allocated.

Integrity. A zoo model (found by name) is loaded only when its card carries the weights' sha256 and the
bytes match it; the digest is taken over the very bytes that are then parsed. A card without one is
refused (`zoo show` and `zoo list` say so): add the file's sha256 to the card or re-import the weights with
`restorekit zoo import`. A weights file given by path is the user's own choice of file: the card beside it
is checked when it holds a sha256 and trusted as the path is when it does not (cards written before the
trainer recorded one); the trainer's `OUT/final.json`, `publish` and `zoo import` always write one.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import shlex
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from restorekit.card import ModelCard, Result, card_path, is_plain_name, parse_card, read_card, write_card
from restorekit.errors import ModelError
from restorekit.models import (
    Model,
    StateDict,
    build,
    build_loaded,
    check_arguments,
    from_state_dict,
    get_architecture,
    list_models,
)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".mat")
UNWRAP_KEYS = ("params_ema", "params", "state_dict", "model_state_dict")  # BasicSR / KAIR / Lightning nesting


# ---------------------------------------------------------------------------------------------------
# Weights files
# ---------------------------------------------------------------------------------------------------


def read_weights(path: str | Path, expected_sha256: str | None = None) -> StateDict:
    """Tensors from a safetensors, weights-only PyTorch or MATLAB file, unwrapping 'params'-style nesting.

    With `expected_sha256` the file is read once, hashed and parsed from those same bytes, so what is
    verified is what is loaded (no window for the file to change between the check and the read)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ModelError(f"{path}: not a weights file restorekit reads (expected {', '.join(WEIGHT_SUFFIXES)})")
    data = None
    if expected_sha256 is not None:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected_sha256:
            raise ModelError(f"{path}: sha256 does not match its model card (file changed or corrupt); "
                             "restore the original file or re-import it with `restorekit zoo import`")
    return _tensors_only(reader(path, data), path)


def _read_safetensors(path: Path, data: bytes | None) -> object:
    from safetensors.torch import load, load_file

    try:
        return load(data) if data is not None else load_file(str(path))
    except Exception as err:  # noqa: BLE001 - any parse failure means "not a readable safetensors file"
        raise ModelError(f"{path}: cannot read weights (not a safetensors file, or truncated: "
                         f"{_first_sentence(err)})") from None


def _read_torch(path: Path, data: bytes | None) -> object:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes are not the user's business
            return torch.load(io.BytesIO(data) if data is not None else str(path), map_location="cpu",
                              weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelError(_pickle_refusal(path, err)) from None
    except Exception as err:  # noqa: BLE001 - truncated zip, EOF, bad header: all "cannot read"
        raise ModelError(f"{path}: cannot read weights (truncated or not a PyTorch file: "
                         f"{_first_sentence(err)})") from None


def _read_matlab(path: Path, data: bytes | None) -> object:
    from restorekit.models._matconvnet import read_mat

    return read_mat(path)


_READERS: dict[str, Callable[[Path, bytes | None], object]] = {
    ".safetensors": _read_safetensors, ".pth": _read_torch, ".pt": _read_torch, ".mat": _read_matlab}


def _pickle_refusal(path: Path, err: pickle.UnpicklingError) -> str:
    """Our one line for torch's weights-only refusal (its text suggests weights_only=False: never that)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if found:
        return (f"{path}: refused: the file holds pickled Python objects ({found.group(1)}), not just tensors; "
                "loading it could run code. Convert it to .safetensors where you trust it.")
    return (f"{path}: cannot read weights (not a tensors-only PyTorch file: a plain pickle, or corrupt); "
            "only files torch.save wrote from tensors are loaded. Convert it to .safetensors where you trust it.")


def _first_sentence(err: Exception) -> str:
    text = " ".join(str(err).split())
    return (text.split(". ")[0] if text else type(err).__name__)[:160]


def _tensors_only(state: object, path: Path) -> StateDict:
    for key in UNWRAP_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{path}: not a state dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not _plain_tensor(value):
            kind = type(value).__name__ if not isinstance(value, torch.Tensor) else f"a {value.dtype} {value.layout} tensor"
            raise ModelError(f"{path}: not a state dict of plain tensors ({key!r:.60} is {kind})")
    return state


def _plain_tensor(value: object) -> bool:
    """A dense real CPU tensor: what load_state_dict can copy without surprises (a complex tensor would be
    cast with a warning, a sparse or meta one fails deep inside)."""
    return (isinstance(value, torch.Tensor) and value.layout == torch.strided and value.device.type == "cpu"
            and not value.is_complex() and not value.is_quantized)


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
    card_file: Path | None = None


def entries(*, strict: bool = False) -> list[Entry]:
    """Every installed model, sorted by name (user models shadow bundled ones). A card that cannot be read
    or names an architecture/arguments that cannot be built is skipped with a one-line warning (strict:
    raised), so it cannot break unrelated models, the server's list or `--task` choices."""
    found, problems = _scan()
    if strict and problems:
        raise next(iter(problems.values()))
    _warn(problems)
    return found


def _scan() -> tuple[list[Entry], dict[str, ModelError]]:
    """The usable entries, and the error of each card that is not (keyed by the card file's stem, the
    name a user would type for it)."""
    found: dict[str, Entry] = {}
    problems: dict[str, ModelError] = {}
    for folder, source in ((user_dir(), "user"), (bundled_dir(), "bundled")):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            try:
                card = read_card(path)
                _check_buildable(card, path)
            except ModelError as err:
                problems.setdefault(path.stem, err)
                continue
            weights = folder / (card.file or f"{card.name}.safetensors")
            found.setdefault(card.name, Entry(card, weights, source, path))
    return sorted(found.values(), key=lambda e: e.card.name), problems


def _warn(problems: dict[str, ModelError]) -> None:
    for err in problems.values():
        print(f"restorekit: warning: skipping {err}", file=sys.stderr)


def _check_buildable(card: ModelCard, card_file: Path) -> None:
    """The card's architecture is registered and takes its arguments (names and types)."""
    try:
        check_arguments(card.architecture, card.arguments)
    except ModelError as err:
        raise ModelError(f"{card_file}: {err}") from None


def zoo_cards() -> list[ModelCard]:
    return [e.card for e in entries()]


def _installed(name: str) -> Entry | None:
    """The zoo model `name`; when its own card is the broken one, that card's error (one line naming the
    file) instead of a warning followed by "no such model"."""
    found, problems = _scan()
    entry = next((entry for entry in found if entry.card.name == name), None)
    if entry is None and name in problems:
        _warn({stem: err for stem, err in problems.items() if stem != name})
        raise problems[name]
    _warn(problems)
    return entry


def find(name: str) -> Entry:
    entry = _installed(name)
    if entry is not None:
        return entry
    installed = ", ".join(e.card.name for e in _scan()[0]) or \
        f"none installed in {', '.join(str(d) for d in weights_dirs())}"
    raise ModelError(f"no zoo model {name!r}; installed: {installed}")


@dataclass(frozen=True)
class WeightsState:
    """What loading an installed model would find, without building it: `zoo show` and `zoo list`."""

    ok: bool
    label: str  # 'ok' | 'missing' | 'no sha256' | 'sha256 mismatch'
    detail: str


def weights_status(entry: Entry) -> WeightsState:
    if not entry.weights.is_file():
        return WeightsState(False, "missing", f"no file {entry.weights}")
    if entry.card.sha256 is None:
        return WeightsState(False, "no sha256", _missing_hash_hint(entry))
    if sha256(entry.weights) != entry.card.sha256:
        return WeightsState(False, "sha256 mismatch", f"{entry.weights} changed or is corrupt; restore the "
                            "original file or re-import it with `restorekit zoo import`")
    return WeightsState(True, "ok", str(entry.weights))


def _missing_hash_hint(entry: Entry) -> str:
    card_file = entry.card_file or card_path(entry.weights)
    return (f"{card_file} has no sha256 for {entry.weights.name}, so the zoo will not load it; add "
            f'"sha256": "<sha256sum of {entry.weights.name}>" to the card or re-import the weights with '
            "`restorekit zoo import`")


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


def load_installed(entry: Entry) -> Model:
    """A zoo model: only with a sha256 in its card, verified over the bytes that are loaded."""
    if entry.card.sha256 is None:
        raise ModelError(_missing_hash_hint(entry))
    return load_carded(entry.weights, entry.card, entry.card_file)


def load_carded(weights: Path, card: ModelCard, card_file: Path | None = None) -> Model:
    """Build the card's architecture and load its weights (stored fp16, run fp32), checking the sha256
    when the card has one (the zoo's rule that it must is `load_installed`'s)."""
    _check_buildable(card, card_file or card_path(weights))
    state = read_weights(weights, card.sha256)
    model = build_loaded(card.architecture, card.arguments, state, str(weights))
    model.name, model.card = card.name, card
    return model.eval()


def load_model(name_or_path: str, **arguments) -> Model:
    """A registered model name (built with `arguments`, e.g. scale), a zoo name or a weights file."""
    if name_or_path in list_models():
        return build(name_or_path, **arguments)
    entry = _installed(name_or_path)
    if entry is not None:
        return load_installed(entry)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        zoo = ", ".join(e.card.name for e in _scan()[0]) or "none installed"
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
    """fp16 safetensors + its validated card (with file and sha256), both written atomically. A zoo name that is
    also a registered architecture's is refused: `load_model` would build the untrained architecture instead."""
    from safetensors.torch import save

    if card.name in list_models():
        raise ModelError(f"zoo name {card.name!r} is a registered architecture's name, which `--model` resolves "
                         "first: choose another name")

    from restorekit.atomic import write_bytes

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model_state.items()}
    write_bytes(target, save(state, metadata={"architecture": card.architecture, "name": card.name}))
    final = card.model_copy(update={"file": target.name, "sha256": sha256(target), "dtype": "float16"})
    write_card(card_path(target), final)
    return target


def publish(source: Path, name: str, card_updates: dict | None = None, folder: Path | None = None) -> Path:
    """Copy a trained carded model (the trainer's OUT/final.safetensors) into a zoo folder as NAME."""
    card = read_card(card_path(source))
    card = parse_card({**card.to_json(), **(card_updates or {}), "name": name}, card_path(source))
    folder = folder or user_dir()
    return save_weights(read_weights(source, card.sha256), folder / f"{name}.safetensors", card)


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
                      arguments: dict | None = None, levels: tuple[float, float] | None = None
                      ) -> tuple[Path, ModelCard]:
    """`restorekit zoo import`: detect, convert and store a released checkpoint in the user's zoo with a
    card holding its provenance (source, license, the original file's sha256) and, when the benchmark data
    is present, results measured on import."""
    path = Path(path).expanduser()
    if not is_plain_name(name):
        raise ModelError(f"zoo name {name!r}: must be a plain file name, not a path (it becomes NAME.safetensors)")
    model = from_state_dict(read_weights(path), str(path), **(arguments or {}))
    arch = get_architecture(model.info.name)
    folder = folder or user_dir()
    target = folder / f"{name}.safetensors"
    if target.exists():
        raise ModelError(f"{target}: a zoo model named {name!r} exists already (choose another --name)")
    task = task or next((t for t in model.info.tasks if t not in ("any", "restore")), model.info.task)
    card = parse_card({
        "name": name, "architecture": arch.name, "arguments": model.info.arguments, "family": arch.family,
        "task": task, "description": f"{arch.summary or arch.name}, converted from a released checkpoint",
        "scales": list(model.info.scales) if max(model.info.scales) > 1 else None, "license": license,
        "levels": list(levels) if levels else None,
        "provenance": {"source": source or str(path), "license": license, "original_file": path.name,
                       "original_sha256": sha256(path),
                       "imported_with": shlex.join(["restorekit", "zoo", "import", str(path), "--name", name,
                                                    *(["--levels", ",".join(f"{v:g}" for v in levels)] if levels
                                                      else [])])},
    }, f"zoo import {path}")
    if measure_results:
        card = card.model_copy(update={"results": measure(model, task, name)})
    return save_weights(model.module.state_dict(), target, card), card
