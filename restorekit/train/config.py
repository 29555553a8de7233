"""Training configs: BasicSR-like YAML, one file per experiment, every key declared here with its default.

Users' complaint about toolbox configs is that they are unclear: keys come from registries, defaults hide
in code, typos are ignored. Here the whole schema is one table (`SCHEMA`) that the loader, the error
messages and docs/training.md all read. Loading is strict:

* an unknown key fails, naming the file, the key and the closest known key;
* a value of the wrong type fails, naming the file, the key, the expected type and the value;
* `--set key=value` overrides (values parsed as YAML) are checked the same way;
* the semantic checks that need the outside world (dataset folders exist, degradation specs parse,
  the model builds, freeze patterns match) run in `restorekit.train.trainer.prepare`, still before the
  first step.

Numbers written like `1e-4` are accepted for float keys (PyYAML reads them as strings: a classic trap).
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from restorekit.errors import ConfigError
from restorekit.ops import GREY_FORMULAS


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED = _Required()


@dataclass(frozen=True)
class Key:
    """One config key: its type, default (or REQUIRED), allowed values and meaning."""

    kind: str  # int | float | bool | str | list[str] | list[int] | list[float] | dict | levels | loss
    default: Any
    doc: str
    choices: tuple = ()
    nullable: bool = False


def _k(kind, default, doc, choices=(), nullable=False) -> Key:
    return Key(kind, default, doc, tuple(choices), nullable)


AUGS = ("blend", "rgb", "mixup", "cutout", "cutmix", "cutmixup", "cutblur")
TASKS = ("sr", "denoise", "jpeg", "deblur", "inpaint", "interpolate", "derain", "dehaze", "restore")
SOURCES = ("folder", "skimage", "synthetic")

SCHEMA: dict[str, Any] = {
    "name": _k("str", "run", "Run name, written into logs and the model card."),
    "seed": _k("int", 0, "Seed of everything random: image order, crops, flips, levels, noise, augmentation, init."),
    "task": _k("str", "denoise", "Task whose metric protocol validation uses (RGB or Y, border crop), as in "
               "`restorekit eval`.", TASKS),
    "device": _k("str", "auto", "cpu, cuda, cuda:N or auto (CUDA when available). Under torchrun each process "
                 "uses cuda:LOCAL_RANK."),
    "threads": _k("int", None, "CPU threads for the model (torch.set_num_threads); null: the cores left after the "
                  "loader workers (on a 2-core machine with 2 workers: 1), which avoids oversubscription stalls.",
                  nullable=True),
    "deterministic": _k("bool", False, "torch.use_deterministic_algorithms(True) and no cuDNN autotuning: "
                        "bit-identical reruns and resumes (slower on GPU)."),
    "model": {
        "type": _k("str", REQUIRED, "Registered architecture (`restorekit.models.list_models()`), e.g. dncnn."),
        "args": _k("dict", {}, "Keyword arguments of the architecture, e.g. {depth: 5, features: 16}."),
        "init": _k("str", None, "Weights file to start from (safetensors or .pth, read weights-only).",
                   nullable=True),
        "init_strict": _k("bool", True, "Whether `init` must match every parameter name."),
        "freeze": _k("list[str]", [], "Parameter-name patterns (fnmatch, e.g. 'model.0.*') to freeze."),
        "train_only": _k("list[str]", [], "If not empty, freeze every parameter NOT matching one of these patterns "
                         "(AdaFM: train only the AdaFM layers)."),
        "compile": _k("bool", False, "Wrap the model in torch.compile (opt-in: slow start, faster steps on GPU)."),
        "strength": _k("float", None, "Modulation strength lambda set on a modulated model (`set_strength`) for "
                       "training and validation; null keeps the model's own (AdaFM layers: 1, the adapted end; "
                       "conditional IN: 0, the start level). Conditional-IN adaptation trains at 1.", nullable=True),
    },
    "data": {
        "train": {
            "source": _k("str", "folder", "Where clean images come from: folder (any usual layout, or "
                         "degraded/ + clean/ pairs), skimage (bundled samples), synthetic.", SOURCES),
            "folder": _k("str", None, "Image folder, or a benchmark name under RESTOREKIT_DATA (e.g. Train400).",
                         nullable=True),
            "images": _k("list[str]", ["astronaut", "camera", "coffee", "chelsea", "coins", "moon"],
                         "source skimage: which bundled samples."),
            "count": _k("int", 16, "source synthetic: number of images."),
            "size": _k("int", 128, "source synthetic: image side in pixels."),
            "limit": _k("int", None, "Use only the first N images of the folder.", nullable=True),
            "channels": _k("int", None, "1 (grey), 3 (RGB) or null (as stored).", (1, 3), nullable=True),
            "grey": _k("str", "luma", "How RGB images become 1 channel: luma (full-range BT.601, as PIL/OpenCV) "
                       "or y (MATLAB rgb2ycbcr Y, studio swing: the JPEG and SR benchmarks' Y channel).", tuple(GREY_FORMULAS)),
            "levels": _k("levels", REQUIRED, "Degradation levels: a list (or name -> value mapping) of degradation "
                         "specs such as 'noise:sigma=0..20'; null for a paired folder; a mapping {spec, folder, "
                         "patch} gives a level its own images (MBN's per-factor data)."),
            "patch": _k("int", 48, "Side of the clean (target) patch; the degraded input is patch/scale."),
            "scale": _k("int", 1, "Size factor between target and input (SR); patch must be a multiple."),
            "flip": _k("bool", True, "Random horizontal flips."),
            "rot": _k("bool", True, "Random quarter-turn rotations (with flip: all 8 dihedral transforms)."),
            "workers": _k("int", 2, "DataLoader worker processes per training process (0: in the main process)."),
            "prefetch": _k("int", 4, "Batches each worker prepares ahead."),
            "degrade_on": _k("str", "worker", "worker: per-sample degradation in the loader (rank-invariant, exact "
                             "resume); device: batched on the training device (fastest on GPU).",
                             ("worker", "device")),
        },
        "val": {
            "source": _k("str", "skimage", "Validation images: folder, skimage or synthetic.", SOURCES),
            "folder": _k("str", None, "Folder or benchmark name (e.g. Set12).", nullable=True),
            "images": _k("list[str]", ["astronaut", "camera"], "source skimage: which bundled samples."),
            "count": _k("int", 4, "source synthetic: number of images."),
            "size": _k("int", 96, "source synthetic: image side."),
            "limit": _k("int", None, "Only the first N images.", nullable=True),
            "channels": _k("int", None, "1, 3 or null (as the training data).", (1, 3), nullable=True),
            "grey": _k("str", None, "RGB to 1 channel for validation: luma or y; null: as data.train.grey.",
                       tuple(GREY_FORMULAS), nullable=True),
            "crop": _k("int", 128, "Central crop side (keeps validation fast; null: whole images).", nullable=True),
            "levels": _k("levels", None, "Levels to validate (same form as data.train.levels); null: the training "
                         "levels. Fixed levels (sigma=25) give comparable numbers.", nullable=True),
            "every": _k("int", 0, "Validate every N steps (0: only at the end and, for on_demand, after each "
                        "epoch)."),
            "seed": _k("int", 0, "Seed of the validation degradations (per image, from its file name)."),
        },
    },
    "strategy": {
        "type": _k("str", "rigid_joint", "How levels are sampled: single, rigid_joint, on_demand, uncertainty, "
                   "curriculum, anti_curriculum, mbn_cycle.",
                   ("single", "rigid_joint", "on_demand", "uncertainty", "curriculum", "anti_curriculum",
                    "mbn_cycle")),
        "level": _k("int", 0, "single: index of the level to train on."),
        "epoch_steps": _k("int", None, "Steps per epoch (on_demand updates shares after each); null: one pass "
                          "over the training images.", nullable=True),
        "curriculum": _k("str", "staged", "curriculum/anti_curriculum: staged (one level per stage) or cumulative "
                         "(stages add levels).", ("staged", "cumulative")),
        "cycle": _k("list[int]", None, "mbn_cycle: minibatches of each level per cycle, e.g. [1, 1, 1, 3].",
                    nullable=True),
    },
    "augment": {
        "moa": _k("bool", False, "Mixture of augmentations (thesis Ch. 4) on each batch."),
        "p": _k("float", 0.6, "MoA decision probability: 1.0 for SR, 0.6 for DN/JPEG/mixed, 0.2 for small SR nets."),
        "augs": _k("list[str]", list(AUGS), "MoA members (any of blend, rgb, mixup, cutout, cutmix, cutmixup, "
                   "cutblur)."),
        "mix_p": _k("list[float]", None, "Ratios of the members (null: uniform); RealSR: 0.1 each, 0.4 cutblur.",
                    nullable=True),
        "alpha": {
            "blend": _k("float", 0.6, "Blend: v ~ U(alpha, 1)."),
            "mixup": _k("float", 1.2, "Mixup: v ~ Beta(alpha, alpha)."),
            "cutout": _k("float", 0.001, "Cutout: probability of erasing each input pixel."),
            "cutmix": _k("float", 0.7, "CutMix: box side ratio ~ N(alpha, 0.01^2)."),
            "cutmixup": _k("float", 0.7, "CutMixup: box side ratio ~ N(alpha, 0.01^2)."),
            "cutmixup_mixup": _k("float", 1.2, "CutMixup: mixup Beta(alpha, alpha)."),
            "cutblur": _k("float", 0.7, "CutBlur: box side ratio ~ N(alpha, 0.01^2)."),
        },
    },
    "train": {
        "steps": _k("int", REQUIRED, "Optimizer steps (override with --set train.steps=N)."),
        "batch_size": _k("int", 16, "GLOBAL batch: split evenly over torchrun processes, so 1 and N processes "
                         "see the same samples per step."),
        "loss": _k("loss", "l1", "l1, l2, charbonnier, ssim, mbn (DuRN's -1.1*SSIM + 0.75*L1), or a list of "
                   "{type, weight} terms."),
        "charbonnier_eps": _k("float", 1e-3, "Charbonnier: sqrt(d^2 + eps^2)."),
        "optimizer": {
            "type": _k("str", "adam", "adam or adamw.", ("adam", "adamw")),
            "lr": _k("float", 1e-4, "Initial learning rate."),
            "betas": _k("list[float]", [0.9, 0.999], "Adam betas."),
            "eps": _k("float", 1e-8, "Adam epsilon."),
            "weight_decay": _k("float", 0.0, "Weight decay (decoupled for adamw)."),
        },
        "scheduler": {
            "type": _k("str", "constant", "constant, multistep or cosine.", ("constant", "multistep", "cosine")),
            "milestones": _k("list[int]", [], "multistep: steps at which the lr is multiplied by gamma."),
            "gamma": _k("float", 0.5, "multistep: factor per milestone."),
            "eta_min": _k("float", 0.0, "cosine: final learning rate."),
            "warmup_steps": _k("int", 0, "Linear warm-up from 0 over this many steps."),
        },
        "grad_clip_norm": _k("float", 0.0, "Clip the global gradient norm to this (0: off)."),
        "grad_clip_value": _k("float", 0.0, "Clip each gradient value to +-this (0: off; RCAN fine-tuning: 0.5)."),
        "ema_decay": _k("float", 0.0, "Exponential moving average of the weights (0: off; BasicSR/KAIR: 0.999). "
                        "Validation and final.safetensors use the EMA weights."),
        "amp": _k("str", "none", "Mixed precision on GPU: none, bf16 or fp16 (with loss scaling).",
                  ("none", "bf16", "fp16")),
        "log_every": _k("int", 10, "Write a log.jsonl line every N steps."),
        "checkpoint_every": _k("int", 1000, "Write a checkpoint every N steps (0: only the final one)."),
        "keep_checkpoints": _k("int", 2, "How many recent checkpoints to keep."),
    },
    "logging": {
        "tensorboard": _k("bool", True, "Write TensorBoard event files under OUT/tensorboard."),
        "progress": _k("str", "auto", "Progress bar: auto (only on a terminal), on, off.", ("auto", "on", "off")),
    },
}


class Node(dict):
    """A validated config section: a dict that also allows attribute access (cfg.train.steps)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_plain(self) -> dict:
        return {k: v.to_plain() if isinstance(v, Node) else copy.deepcopy(v) for k, v in self.items()}


# ------------------------------------------------------------------------------------------ helpers


def iter_keys(schema: dict = SCHEMA, prefix: str = ""):
    """(dotted key, Key) for every leaf, in schema order (used by the docs and tests)."""
    for name, value in schema.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from iter_keys(value, dotted + ".")
        else:
            yield dotted, value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _number(value: Any) -> float | None:
    """A real number from an int, float or numeric string ('1e-4'); None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _check_scalar(kind: str, value: Any) -> tuple[bool, Any]:
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "str":
        return isinstance(value, str), value
    if kind == "int":
        number = _number(value)
        if number is None or not math.isfinite(number) or number != int(number):
            return False, value
        return True, int(number)
    if kind == "float":
        number = _number(value)
        return (number is not None and math.isfinite(number)), number
    raise AssertionError(kind)


KIND_TEXT = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "list[str]": "a list of strings", "list[int]": "a list of integers", "list[float]": "a list of numbers",
             "dict": "a mapping", "levels": "a list or mapping of degradation specs",
             "loss": "a loss name or a list of {type, weight}"}


def check_value(key: Key, value: Any, where: str) -> Any:
    """`value` converted to the key's type, or ConfigError '<where>: expected ..., got ...'."""
    if value is None:
        if key.nullable:
            return None
        raise ConfigError(f"{where}: must not be null; expected {KIND_TEXT[key.kind]}")
    kind = key.kind
    ok, out = True, value
    if kind in ("int", "float", "bool", "str"):
        ok, out = _check_scalar(kind, value)
    elif kind.startswith("list["):
        inner = kind[5:-1]
        if not isinstance(value, list):
            ok = False
        else:
            out = []
            for i, item in enumerate(value):
                good, converted = _check_scalar(inner, item)
                if not good:
                    raise ConfigError(f"{where}[{i}]: expected {KIND_TEXT[inner]}, got {item!r} ({_type_name(item)})")
                out.append(converted)
    elif kind == "dict":
        ok = isinstance(value, dict)
    elif kind == "levels":
        out = check_levels(value, where)
    elif kind == "loss":
        out = check_loss(value, where)
    if not ok:
        raise ConfigError(f"{where}: expected {KIND_TEXT[kind]}, got {value!r} ({_type_name(value)})")
    if key.choices and out not in key.choices:
        options = ", ".join(str(c) for c in key.choices)
        raise ConfigError(f"{where}: {out!r} is not one of: {options}")
    return out


LEVEL_KEYS = ("spec", "folder", "patch")


def check_levels(value: Any, where: str) -> list[dict]:
    """Normalise levels to [{name, spec, folder, patch}] (specs are parsed later, at start-up)."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [(None, v) for v in value]
    else:
        raise ConfigError(f"{where}: expected {KIND_TEXT['levels']}, got {value!r} ({_type_name(value)})")
    if not items:
        raise ConfigError(f"{where}: needs at least one level")
    levels = []
    for i, (name, item) in enumerate(items):
        here = f"{where}.{name}" if name is not None else f"{where}[{i}]"
        entry = {"name": str(name) if name is not None else None, "spec": None, "folder": None, "patch": None}
        if isinstance(item, dict):
            for key in item:
                if key not in LEVEL_KEYS:
                    raise ConfigError(f"{here}: unknown key {key!r}; a level takes {', '.join(LEVEL_KEYS)}")
            entry.update({k: item.get(k) for k in LEVEL_KEYS})
            for key, kind in (("spec", "str"), ("folder", "str"), ("patch", "int")):
                if entry[key] is not None:
                    good, entry[key] = _check_scalar(kind, entry[key])
                    if not good:
                        raise ConfigError(f"{here}.{key}: expected {KIND_TEXT[kind]}, got {item[key]!r}")
        elif isinstance(item, str) or item is None:
            entry["spec"] = item
        else:
            raise ConfigError(f"{here}: expected a degradation spec string, null or a mapping, got {item!r}")
        if entry["name"] is None:
            entry["name"] = entry["spec"] or f"level{i}"
        levels.append(entry)
    return levels


LOSS_NAMES = ("l1", "l2", "charbonnier", "ssim", "mbn")


def check_loss(value: Any, where: str) -> list[dict]:
    """Normalise the loss to [{type, weight}]."""
    terms = [{"type": value, "weight": 1.0}] if isinstance(value, str) else value
    if not isinstance(terms, list) or not terms:
        raise ConfigError(f"{where}: expected {KIND_TEXT['loss']}, got {value!r} ({_type_name(value)})")
    out = []
    for i, term in enumerate(terms):
        here = where if isinstance(value, str) else f"{where}[{i}]"
        if not isinstance(term, dict) or set(term) - {"type", "weight"} or "type" not in term:
            raise ConfigError(f"{here}: expected {{type: NAME, weight: NUMBER}}, got {term!r}")
        if term["type"] not in LOSS_NAMES:
            raise ConfigError(f"{here}: unknown loss {term['type']!r}; choose one of: {', '.join(LOSS_NAMES)}")
        weight = _number(term.get("weight", 1.0))
        if weight is None:
            raise ConfigError(f"{here}.weight: expected a number, got {term.get('weight')!r}")
        out.append({"type": term["type"], "weight": weight})
    return out


def _validate(raw: Any, schema: dict, prefix: str, origin_of) -> Node:
    """Check `raw` against `schema`; `origin_of(key)` says where a key came from (file, or file + --set)."""
    if raw is None:
        raw = {}
    section = prefix.rstrip(".")
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin_of(section)}: {section}: expected a mapping of keys, got {raw!r}")
    for name in raw:
        if name not in schema:
            close = difflib.get_close_matches(str(name), list(schema), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f"; known keys here: {', '.join(schema)}"
            dotted = prefix + str(name)
            raise ConfigError(f"{origin_of(dotted)}: unknown key {dotted!r}{hint}")
    node = Node()
    for name, spec in schema.items():
        dotted = prefix + name
        if isinstance(spec, dict):
            node[name] = _validate(raw.get(name), spec, dotted + ".", origin_of)
        elif name in raw:
            node[name] = check_value(spec, raw[name], f"{origin_of(dotted)}: {dotted}")
        elif spec.default is REQUIRED:
            raise ConfigError(f"{origin_of(dotted)}: {dotted} is required ({spec.doc})")
        else:  # defaults go through the same normalisation as given values
            node[name] = check_value(spec, copy.deepcopy(spec.default), f"default of {dotted}")
    return node


def parse_override(text: str) -> tuple[str, Any]:
    """'train.steps=20' -> ('train.steps', 20): the value is read as YAML ('1e-4' stays a numeric string)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.steps=1000")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        return key, yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({err})") from err


def apply_override(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] = ()) -> Node:
    """Read, override and validate a config; every error names the file and the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    return validate_config(raw, str(path), overrides)


def validate_config(raw: Any, origin: str = "<config>", overrides: list[str] = ()) -> Node:
    raw = copy.deepcopy(raw) if raw is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of keys at the top level")
    overridden: dict[str, str] = {}
    for text in overrides:
        key, value = parse_override(text)
        apply_override(raw, key, value)
        overridden[key] = text

    def origin_of(key: str) -> str:
        for set_key, text in overridden.items():
            if key == set_key or key.startswith(set_key + ".") or set_key.startswith(key + "."):
                return f"{origin} (--set {text})"
        return origin

    config = _validate(raw, SCHEMA, "", origin_of)
    config.origin = origin
    return config


def reference_markdown() -> str:
    """The config reference table of docs/training.md, generated from SCHEMA."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for dotted, key in iter_keys():
        default = "**required**" if key.default is REQUIRED else f"`{yaml.safe_dump(key.default, default_flow_style=True).strip().removesuffix('...').strip()}`"
        choices = f" One of: {', '.join(f'`{c}`' for c in key.choices)}." if key.choices and len(key.choices) <= 3 else ""
        lines.append(f"| `{dotted}` | {default} | {key.doc}{choices} |")
    return "\n".join(lines)
