"""Model families, one file each, behind a registry of typed descriptors (timm's registry, spandrel's descriptors).

A family module (any public module in this package) registers its builders with `@register_model(name,
...descriptor fields...)`. The `Architecture` descriptor says what callers must know: the tasks it serves
(names from `restorekit.tasks`), its scales, the inputs its call takes (image, strength, level, level
map, mask, degradation record, scale, factor), what it returns, size multiple, receptive field and tiling mode,
measured fp16/bf16 flags, how to recognise (`detect`) and convert (`convert`) released checkpoints, and
the small configurations the contract tests build. Nothing else in the package names a family: the zoo,
the CLI, the server, export and tests find them here.

    create_model("dncnn", in_channels=3)        # the bare nn.Module (timm's entry point)
    model = build("adafm_net", blocks=4)        # a `Model`: module + resolved `ModelInfo`
    model(image, strength=0.4)                  # conditions are call arguments, never module state
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import sys
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from restorekit.errors import ModelError
from restorekit.tasks import MODEL_TASKS

if TYPE_CHECKING:
    from restorekit.card import ModelCard

StateDict = dict[str, torch.Tensor]

# What a model's call may take besides the image, and what it may return.
CONDITIONS = ("strength", "level", "level_map", "mask", "record", "scale", "factor")
OUTPUTS = ("image", "logits", "boxes", "map")
TILING_MODES = ("tile", "whole")  # 'tile': any crop with `receptive_field` context; 'whole': needs the full image


@dataclass(frozen=True)
class Architecture:
    """The descriptor of one registered builder. Fields that depend on the builder's arguments (scale,
    channels, receptive field, precision flags of a variant) are filled per instance by `resolve`."""

    name: str
    build: Callable[..., nn.Module]
    family: str
    tasks: tuple[str, ...]
    summary: str = ""
    scales: tuple[int, ...] = (1,)  # output size / input size; several for multi-head SR (CARN)
    # (low, high): any scale between (fractional too) is served, the level being the scale (AdaFM's x3 -> x4
    # slider: the input bicubic-upscaled by the requested scale, lambda(scale) from the card)
    scale_range: tuple[float, float] | None = None
    # the degradation types (degradation-engine operator names) a model taking `factor` has paths for (MBN)
    factors: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # conditions from CONDITIONS the call takes (the image is implied)
    outputs: tuple[str, ...] = ("image",)
    in_channels: int | None = 3  # None: any channel count
    size_multiple: int = 1  # inputs are padded to a multiple of this
    receptive_field: int = 0  # input pixels of context each side that an output pixel depends on
    tiling: str = "tile"
    fp16: bool = False  # "assume false until tested" (spandrel PR #73); tests/test_model_contract.py measures
    bf16: bool = False
    blind: bool = False  # removes an unknown degradation (what `--task auto` picks)
    # >1: the module takes its LR input nearest-upsampled by this factor, to HR size (CutBlur's desubpixel
    # SR models, thesis 4.3.1 step 5); `Model.__call__` and the trainer do it with `upsample_input`
    input_upsample: int = 1
    detect: Callable[[StateDict], dict | None] | None = None  # released / our state dict -> builder arguments
    convert: Callable[[StateDict], StateDict] | None = None  # released key layout -> ours (after detect)
    call: Callable[..., Any] | None = None  # call(module, image, **conditions); default module(image, **conditions)
    resolve: Callable[[dict], dict] | None = None  # builder arguments -> per-instance field overrides
    test_configs: tuple[dict, ...] = ({},)  # small builder arguments for the contract tests

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in MODEL_TASKS]
        bad_inputs = [c for c in self.inputs if c not in CONDITIONS]
        bad_outputs = [o for o in self.outputs if o not in OUTPUTS]
        if unknown or bad_inputs or bad_outputs or self.tiling not in TILING_MODES:
            raise ValueError(f"architecture {self.name!r}: unknown task(s) {unknown}, input(s) {bad_inputs}, "
                             f"output(s) {bad_outputs} or tiling {self.tiling!r}")

    def info(self, arguments: Mapping[str, Any] | None = None) -> ModelInfo:
        """The resolved description of this architecture built with `arguments`."""
        arguments = dict(arguments or {})
        overrides = self.resolve(arguments) if self.resolve else {}
        names = {f.name for f in fields(ModelInfo)}
        base = {f.name: getattr(self, f.name) for f in fields(self) if f.name in names}
        return ModelInfo(**{**base, **overrides, "arguments": arguments, "architecture": self})


@dataclass(frozen=True)
class ModelInfo:
    """What inference code must know about one built model (an `Architecture` resolved for its arguments)."""

    architecture: Architecture
    arguments: dict = field(default_factory=dict)
    tasks: tuple[str, ...] = ()
    scales: tuple[int, ...] = (1,)
    scale_range: tuple[float, float] | None = None
    factors: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("image",)
    in_channels: int | None = 3
    size_multiple: int = 1
    receptive_field: int = 0
    tiling: str = "tile"
    fp16: bool = False
    bf16: bool = False
    blind: bool = False
    input_upsample: int = 1

    @property
    def name(self) -> str:
        return self.architecture.name

    @property
    def family(self) -> str:
        return self.architecture.family

    @property
    def task(self) -> str:
        return self.tasks[0] if self.tasks else "any"

    @property
    def modulated(self) -> bool:
        """Whether the strength slider means anything for this model."""
        return "strength" in self.inputs

    @property
    def scale(self) -> int:
        """The output scale of a single-scale model (multi-scale models: pass `scale=` to the call)."""
        return self.scales[0] if len(self.scales) == 1 else 0

    def scale_for(self, requested: float | None) -> float:
        """The scale a call runs at: `requested`, checked against the model's heads or its continuous range."""
        if requested is not None and self.scale_range is not None:
            low, high = self.scale_range
            if not low <= requested <= high:
                raise ModelError(f"{self.name} upscales by x{low:g} to x{high:g}, not x{requested:g}")
            return int(requested) if float(requested).is_integer() else float(requested)
        if requested is None:
            if self.scale_range is not None:
                raise ModelError(f"{self.name} upscales by any scale from x{self.scale_range[0]:g} to "
                                 f"x{self.scale_range[1]:g}: say which")
            if len(self.scales) > 1:
                raise ModelError(f"{self.name} has x{'/x'.join(map(str, self.scales))} heads: say which scale")
            return self.scales[0]
        if requested not in self.scales:
            raise ModelError(f"{self.name} upscales by x{'/x'.join(map(str, self.scales))}, not x{requested}")
        return requested

    def supports(self, precision: str) -> bool:
        return precision == "fp32" or getattr(self, precision, False)


@dataclass(eq=False)
class Model:
    """A built module with its description and, for zoo models, its card (spandrel's ModelDescriptor)."""

    module: nn.Module
    info: ModelInfo
    name: str = ""
    card: ModelCard | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.info.name

    def __call__(self, image: torch.Tensor, **conditions: Any) -> Any:
        """Run the module on a (B, C, H, W) batch; conditions with value None are left out."""
        given = {k: v for k, v in conditions.items() if v is not None}
        refused = [k for k in given if k not in self.info.inputs]
        if refused:
            takes = ", ".join(self.info.inputs) or "nothing but the image"
            raise ModelError(f"model {self.name!r} takes no {', '.join(refused)} (it takes {takes})")
        image = upsample_input(image, self.info.input_upsample)
        call = self.info.architecture.call
        return call(self.module, image, **given) if call else self.module(image, **given)

    def to(self, *args: Any, **kwargs: Any) -> Model:
        self.module.to(*args, **kwargs)
        return self

    def eval(self) -> Model:
        self.module.eval()
        return self

    @property
    def dtype(self) -> torch.dtype:
        return next((p.dtype for p in self.module.parameters()), torch.float32)

    @property
    def device(self) -> torch.device:
        return next((p.device for p in self.module.parameters()), torch.device("cpu"))


def upsample_input(image: torch.Tensor, factor: int) -> torch.Tensor:
    """The LR image at the size a desubpixel model takes: nearest neighbour, the kernel CutBlur trains with
    (thesis 4.3.1 step 1), so that an LR pixel reaches the first conv exactly as in a CutBlur LR region."""
    return image if factor == 1 else torch.nn.functional.interpolate(image, scale_factor=factor, mode="nearest")


_REGISTRY: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    if architecture.name in _REGISTRY:
        raise ValueError(f"model {architecture.name!r} registered twice")
    _REGISTRY[architecture.name] = architecture
    return architecture


def register_model(name: str, **descriptor: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorate a builder: `@register_model("dncnn", tasks=("denoise",), detect=detect, ...)`.

    The family defaults to the defining module's name (models/dncnn.py -> 'dncnn')."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        family = descriptor.pop("family", builder.__module__.rsplit(".", 1)[-1])
        register(Architecture(name=name, build=builder, family=family, **descriptor))
        return builder

    return decorator


_LOADED = False


def _load_families() -> None:
    """Import every public module of this package once: a family is found by being a file here.

    RESTOREKIT_FAMILIES (folders, separated by os.pathsep) adds family files kept outside the package,
    e.g. a user's own architecture, loaded exactly like the built-in ones."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    for folder in filter(None, os.environ.get("RESTOREKIT_FAMILIES", "").split(os.pathsep)):
        for path in sorted(Path(folder).glob("[!_]*.py")):
            name = f"{__name__}.{path.stem}"
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)


def architectures() -> dict[str, Architecture]:
    _load_families()
    return dict(sorted(_REGISTRY.items()))


def list_models() -> list[str]:
    return list(architectures())


def families() -> list[str]:
    return sorted({a.family for a in architectures().values()})


def get_architecture(name: str) -> Architecture:
    registry = architectures()
    if name not in registry:
        raise ModelError(f"unknown model {name!r}; registered models: {', '.join(registry)}")
    return registry[name]


def check_arguments(name: str, arguments: Mapping[str, Any]) -> None:
    """Unknown builder arguments, or values of the wrong type (a card's `"depth": "17"`), are one clear
    line, not a TypeError from deep inside the builder."""
    build_fn = get_architecture(name).build
    signature = inspect.signature(build_fn)
    if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        unknown = sorted(set(arguments) - set(signature.parameters))
        if unknown:
            raise ModelError(f"model {name!r} takes no argument(s) {', '.join(unknown)}; "
                             f"it takes: {', '.join(signature.parameters) or 'none'}")
    for key, expected in _argument_types(build_fn).items():
        if key in arguments and not _fits_type(arguments[key], expected):
            raise ModelError(f"model {name!r}: argument {key} must be {_type_name(expected)}, "
                             f"not {type(arguments[key]).__name__} ({arguments[key]!r:.40})")


def _argument_types(build_fn: Callable[..., nn.Module]) -> dict[str, Any]:
    """The builder's annotated parameter types; none when they cannot be resolved (a user's family may
    annotate with names it never imports), so an unusual family is built unchecked rather than refused."""
    try:
        hints = typing.get_type_hints(build_fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations only mean "no type check"
        return {}
    hints.pop("return", None)
    return hints


def _fits_type(value: Any, expected: Any) -> bool:
    """Whether `value`, as the JSON a card holds it in, is an `expected` (pydantic's strict JSON mode: no
    "17" for an int, no true for an int, an int is a float and a list a tuple). A value that is not JSON
    or a type pydantic cannot describe is not checked."""
    from pydantic import ValidationError

    try:
        encoded = json.dumps(value)
        adapter = _adapter(expected)
    except Exception:  # noqa: BLE001 - see the docstring
        return True
    try:
        adapter.validate_json(encoded, strict=True)
    except ValidationError:
        return False
    return True


@functools.cache
def _adapter(expected: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(expected)


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def create_model(name: str, **arguments: Any) -> nn.Module:
    """Build a registered architecture's bare module (timm's `create_model`)."""
    check_arguments(name, arguments)
    try:
        return get_architecture(name).build(**arguments)
    except (TypeError, ValueError, RuntimeError, OverflowError, ZeroDivisionError) as err:
        # arguments come from cards and files: a value a builder cannot take (a negative width) is the
        # user's to fix, so one line; the cause stays chained for a debugger.
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ModelError(f"model {name!r} cannot be built with {arguments}: {reason}") from err


def build(name: str, **arguments: Any) -> Model:
    """A registered architecture as a `Model` (module + resolved info), in eval mode."""
    module = create_model(name, **arguments)
    return Model(module.eval(), get_architecture(name).info(arguments))


def describe(name: str, **arguments: Any) -> ModelInfo:
    return get_architecture(name).info(arguments)


def _recognise(arch: Architecture, state: StateDict, where: str) -> dict | None:
    """One detector's verdict. Files are untrusted input: a detector tripping over an odd tensor (a 0-d
    weight, a missing bias) means "not this architecture", not a traceback for the user; a detector's own
    refusal (FDnCNN's layout) is passed on, naming the file."""
    try:
        return arch.detect(state) if arch.detect else None
    except ModelError as err:
        raise ModelError(f"{where}{err}") from None
    except Exception:  # noqa: BLE001 - see the docstring
        return None


def detect(state: StateDict, source: str | None = None) -> tuple[Architecture, dict]:
    """The one architecture whose detector recognises `state`, with the builder arguments it read."""
    where = f"{source}: " if source else ""
    found = [(arch, args) for arch in architectures().values() for args in [_recognise(arch, state, where)]
             if args is not None]
    if not found:
        raise ModelError(f"{where}could not recognise the architecture from its {len(state)} tensors "
                         f"(known: {', '.join(a.name for a in architectures().values() if a.detect)})")
    if len(found) > 1:
        raise ModelError(f"{where}the tensors fit several architectures ({', '.join(a.name for a, _ in found)}); "
                         "pass the architecture explicitly")
    return found[0]


def from_state_dict(state: StateDict, source: str = "weights", **arguments: Any) -> Model:
    """Detect, convert and load a state dict (ours or a released layout) into a `Model`.

    `arguments` supply what the tensors cannot show (an IDN file's scale: the x2/x3/x4 releases hold
    tensors of the same shapes); they override nothing the detector read."""
    arch, detected = detect(state, source)
    clash = {k for k in arguments if k in detected and arguments[k] != detected[k]}
    if clash:
        raise ModelError(f"{source}: the weights say {', '.join(f'{k}={detected[k]}' for k in sorted(clash))}, "
                         f"not {', '.join(f'{k}={arguments[k]}' for k in sorted(clash))}")
    arguments = {**detected, **arguments}
    if arch.convert:
        try:
            state = arch.convert(state)
        except ModelError:
            raise
        except Exception as err:  # a converter meeting shapes its detector let through
            raise ModelError(f"{source}: {arch.name} {arguments}: the weights do not fit "
                             f"({type(err).__name__}: {str(err)[:160]})") from err
    return build_loaded(arch.name, arguments, state, source)


def build_loaded(name: str, arguments: Mapping[str, Any], state: StateDict, source: str) -> Model:
    """`build(name, **arguments)` with `state` loaded; every failure is one line naming `source`.

    The shapes are compared on the meta device first, so arguments that do not match the weights (a card
    claiming 10^5 features) fail in milliseconds instead of allocating whatever the card claims."""
    what = f"{source}: {name} {dict(arguments)}"
    try:
        check_arguments(name, arguments)
        check_fit(name, arguments, state, what)
        model = build(name, **arguments)
    except ModelError as err:
        raise ModelError(err if str(err).startswith(source) else f"{source}: {err}") from err.__cause__
    load_weights(model.module, state, what)
    return model


def check_fit(name: str, arguments: Mapping[str, Any], state: StateDict, what: str) -> None:
    """Missing, unexpected or wrongly shaped tensors, found without allocating the model (the arguments
    are assumed checked: `check_arguments`)."""
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op" and the like
            expected = {k: tuple(v.shape) for k, v in get_architecture(name).build(**arguments).state_dict().items()}
    except Exception:  # noqa: BLE001 - a builder that cannot run on meta: the real build reports for itself
        return
    given = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = [k for k in expected if k in given and expected[k] != given[k]]
    problems = [f"{len(keys)} {kind} tensor(s), e.g. {keys[0]}" for kind, keys in
                (("missing", missing), ("unexpected", unexpected)) if keys]
    if wrong:
        problems.append(f"{wrong[0]} is {list(given[wrong[0]])} in the file, {list(expected[wrong[0]])} in the model"
                        + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""))
    if problems:
        raise ModelError(f"{what}: the weights do not fit ({'; '.join(problems)})")


def load_weights(module: nn.Module, state: StateDict, what: str) -> None:
    """`load_state_dict(strict=True)` with fp16-stored tensors run in fp32; a mismatch is one line, and
    so are NaN or infinite values (corrupt weights would otherwise restore to garbage with exit 0)."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    broken = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if broken is not None:
        raise ModelError(f"{what}: tensor {broken} holds NaN or infinite values (corrupt weights)")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0] if first else "")
        raise ModelError(f"{what}: the weights do not fit ({detail[:200]})") from err


def with_info(model: Model, **overrides: Any) -> Model:
    """A copy of `model` sharing its module, with some info fields replaced (e.g. a converted variant)."""
    return Model(model.module, replace(model.info, **overrides), model.name, model.card)
