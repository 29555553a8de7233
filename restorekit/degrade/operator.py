"""The operator base class and the registry the spec parser reads.

An operator is one degradation type with named level parameters. It is built from parsed values
(fixed, range or choice), draws one concrete level per sample with `sample_level(rng)`, and applies
those levels to a batch with `apply(x, levels, ctx)`. Operators that model physics DL-Net can use
(`W x` in y = (W x)↓t + ε) also implement `forward(x, level, state)`, a differentiable re-application of
the same operator; random structure drawn in `apply` (a mask, a kernel) is returned as per-sample
`state` so `forward` reuses exactly what was applied.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from restorekit.degrade.params import REQUIRED, Fixed, Param, Value, format_value, parse_value
from restorekit.degrade.seeding import Context, training_host_rng
from restorekit.errors import SpecError

Level = dict[str, Any]  # parameter name -> concrete value, for one sample
Extras = dict[str, Any]  # per-sample output of apply: tensors are state, other values are info


def host_exp(t: torch.Tensor) -> torch.Tensor:
    """exp(t), through numpy for CPU data, so a degraded image is the same in every process.

    Measured on the 2-core development machine (torch 2.13 CPU): now and then the first large
    torch.exp / torch.log of a process ran part of the tensor (the main thread's chunk) at about
    4e-5 relative error instead of 3e-8, depending on what the process had run before (half the
    runs after `restorekit degrade` over BSD100); a haze test set then came out 1 grey level apart
    in a few hundred pixels from one run to the next. numpy's exp has no such state. Device
    tensors, and any that need a gradient (DL-Net's forward operators), keep torch.exp.
    """
    if t.device.type != "cpu" or (t.requires_grad and torch.is_grad_enabled()):
        return torch.exp(t)
    return torch.from_numpy(np.exp(t.detach().numpy()))


class NotDifferentiableError(SpecError):
    """The operator has no differentiable forward model (e.g. JPEG's integer quantisation)."""


class SizeError(SpecError, ValueError):
    """An image whose size does not suit the operator (e.g. not divisible by the scale)."""


class Operator:
    """Base class: subclasses set `name`, `params` and implement `apply` (and `forward` if physical)."""

    name: ClassVar[str] = ""
    kind: ClassVar[str | None] = None  # for operators selected by `kind=` (blur, inpaint)
    params: ClassVar[tuple[Param, ...]] = ()
    primary: ClassVar[str | None] = None  # the parameter that is "the level" (AdaFM's scalar, tables)
    summary: ClassVar[str] = ""
    source: ClassVar[str] = ""  # paper / reference the definition and ranges come from
    changes_size: ClassVar[bool] = False  # size-changing levels are drawn once per training batch
    differentiable: ClassVar[bool] = False

    def __init__(self, values: Mapping[str, Value] | None = None, **fixed: Any):
        """Build from parsed values; keyword arguments are fixed values (checked like spec text)."""
        given: dict[str, Value] = dict(values or {})
        where = self.label()
        by_name = {p.name: p for p in self.params}
        for key, raw in fixed.items():
            if key not in by_name:
                raise SpecError(self.unknown_param_message(key))
            given[key] = Fixed(by_name[key].check(raw, where))
        for key in given:
            if key not in by_name:
                raise SpecError(self.unknown_param_message(key))
        self.values: dict[str, Value] = {}
        for param in self.params:
            if param.name in given:
                self.values[param.name] = given[param.name]
            elif param.default is None:
                continue  # optional, no default: absent unless given
            elif param.default is not REQUIRED:
                self.values[param.name] = parse_value(param, str(param.default), where)
        self.validate()

    # ---------------------------------------------------------------------------------- description

    @classmethod
    def label(cls) -> str:
        return f"{cls.name}:kind={cls.kind}" if cls.kind else cls.name

    @classmethod
    def param_names(cls) -> list[str]:
        return (["kind"] if cls.kind else []) + [p.name for p in cls.params]

    @classmethod
    def unknown_param_message(cls, key: str) -> str:
        names = cls.param_names()
        hint = difflib.get_close_matches(key, names, n=1)
        return (
            f"{cls.label()}: unknown parameter {key!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; valid parameters: {', '.join(names)}"
        )

    def validate(self) -> None:
        """Check required parameters and cross-parameter rules (subclasses extend)."""
        for param in self.params:
            if param.required and param.name not in self.values:
                raise SpecError(
                    f"{self.label()}: missing parameter {param.name!r} ({param.doc}; {param.bounds_text()})"
                )

    def spec_text(self) -> str:
        """Canonical spec of this stage, values as given (ranges stay ranges)."""
        parts = [f"kind={self.kind}"] if self.kind else []
        parts += [f"{name}={value.text()}" for name, value in self.values.items()]
        return f"{self.name}:{','.join(parts)}" if parts else self.name

    @classmethod
    def level_text(cls, level: Level) -> str:
        """Spec text with one sample's exact levels (what a record replays)."""
        parts = [f"kind={cls.kind}"] if cls.kind else []
        parts += [f"{k}={format_value(v)}" for k, v in level.items() if k != "kind"]
        return f"{cls.name}:{','.join(parts)}" if parts else cls.name

    @property
    def is_fixed(self) -> bool:
        return all(isinstance(v, Fixed) for v in self.values.values())

    # ------------------------------------------------------------------------------------ behaviour

    def sample_level(self, rng: np.random.Generator) -> Level:
        """One concrete level: every range and choice drawn with `rng`, fixed values copied."""
        level: Level = {"kind": self.kind} if self.kind else {}
        level.update((name, value.sample(rng)) for name, value in self.values.items())
        return level

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        """Degrade batch `x` (B, C, H, W), sample i at `levels[i]`; returns output and per-sample extras."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Differentiable re-application of the same operator (DL-Net's W and ↓t), noise-free."""
        raise NotDifferentiableError(
            f"{self.label()} has no differentiable forward operator; "
            "only masks, blurs, resizing and the photometric models have one"
        )

    def __call__(self, x: torch.Tensor, rng: torch.Generator | np.random.Generator | int | None = None) -> torch.Tensor:
        """Degrade batch `x` with levels drawn per sample; `rng` is a torch.Generator (training path),
        a numpy Generator or an int seed."""
        if isinstance(rng, torch.Generator):
            ctx = Context(host=training_host_rng(rng), generator=rng)
        else:
            ctx = Context(host=np.random.default_rng(rng))
        host_levels = ctx.host
        if self.changes_size:
            level = self.sample_level(host_levels)
            levels = [level] * x.shape[0]
        else:
            levels = [self.sample_level(host_levels) for _ in range(x.shape[0])]
        out, _ = self.apply(x, levels, ctx)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec_text()!r})"


# ------------------------------------------------------------------------------------------ registry

_REGISTRY: dict[str, dict[str | None, type[Operator]]] = {}
_DEFAULT_KIND: dict[str, str] = {}


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: make an operator reachable from spec text by its name (and kind)."""
    kinds = _REGISTRY.setdefault(cls.name, {})
    if cls.kind in kinds:
        raise ValueError(f"operator {cls.label()} registered twice")
    kinds[cls.kind] = cls
    return cls


def set_default_kind(name: str, kind: str) -> None:
    _DEFAULT_KIND[name] = kind


def operator_names() -> list[str]:
    return sorted(_REGISTRY)


def kinds_of(name: str) -> list[str]:
    return sorted(k for k in _REGISTRY.get(name, {}) if k is not None)


def all_operator_classes() -> list[type[Operator]]:
    return [cls for name in sorted(_REGISTRY) for _, cls in sorted(_REGISTRY[name].items(), key=lambda kv: str(kv[0]))]


def operator_class(name: str, kind: str | None = None, *, extra_names: Sequence[str] = ()) -> type[Operator]:
    """Look up an operator; unknown names and kinds raise SpecError listing what exists."""
    if name not in _REGISTRY:
        valid = sorted([*_REGISTRY, *extra_names])
        hint = difflib.get_close_matches(name, valid, n=1)
        raise SpecError(
            f"unknown operator {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; valid operators: {', '.join(valid)}"
        )
    kinds = _REGISTRY[name]
    if kind is None and None in kinds:
        return kinds[None]
    if kind is None:
        kind = _DEFAULT_KIND.get(name)
        if kind is None:
            raise SpecError(f"{name}: missing kind=; valid kinds: {', '.join(kinds_of(name))}")
    if kind not in kinds:
        raise SpecError(f"{name}: unknown kind {kind!r}; valid kinds: {', '.join(kinds_of(name)) or '(none)'}")
    return kinds[kind]


def build_operator(name: str, level: Mapping[str, Any]) -> Operator:
    """Rebuild an operator with fixed values, from a record's name and level dict."""
    level = dict(level)
    kind = level.pop("kind", None)
    return operator_class(name, kind)(**level)
