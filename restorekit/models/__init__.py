"""Model families, one file each, behind a small registry (in the spirit of timm's `create_model`).

A family module decorates plain builder functions with `@register_model("name")`; `create_model(name,
**kwargs)` builds one. Every model takes and returns float (B, C, H, W) images in [0, 1] and carries
`ModelInfo` describing what callers must know (task, scale, size requirements, fp16 safety).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from restorekit.errors import ModelError

# Family modules imported on first use of the registry, so `import restorekit` stays light.
FAMILIES = ("baselines", "dncnn", "adafm")

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


@dataclass
class ModelInfo:
    """What inference code must know about an architecture (spandrel-style descriptors)."""

    family: str
    task: str  # 'sr', 'denoise', 'jpeg', ... or 'any' for the identity baseline
    scale: int = 1  # output size / input size
    in_channels: int | None = 3  # None: any number of channels
    size_multiple: int = 1  # inputs are padded to a multiple of this
    receptive_field: int = 0  # pixels of context on each side a tile needs
    supports_half: bool = False  # "assume false until tested" (spandrel PR #73)
    arguments: dict = field(default_factory=dict)


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorator


def _load_families() -> None:
    for family in FAMILIES:
        importlib.import_module(f"restorekit.models.{family}")


def list_models() -> list[str]:
    _load_families()
    return sorted(_BUILDERS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered architecture; unknown names list what exists."""
    _load_families()
    if name not in _BUILDERS:
        raise ModelError(f"unknown model {name!r}; registered models: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name](**kwargs)
