"""`Degradation`: what was done to one sample, exactly enough to redo it.

A record lists the applied steps (operator name, exact levels, the seed of its random stream, the
input shape) and, for spatially varying degradations, the regions with their own steps. It
serialises to JSON (floats round-trip exactly), `replay(clean)` regenerates the degraded image
bit-exactly from an evaluation record, and `forward(x)` re-applies the operators differentiably
(masks, blurs, resizing), which is what DL-Net's likelihood term needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from restorekit.errors import SpecError

RECORD_FORMAT = "restorekit.degradation/1"

# SHDD's distortion pool, in the order of the values of `Degradation.region_map()`.
SHDD_POOL = ("identity", "noise", "blur", "pink", "contrast")


@dataclass
class Step:
    """One operator application: name, exact levels, the seed of its random stream and input shape."""

    op: str
    levels: dict[str, Any]
    seed: int | None = None
    in_shape: list[int] | None = None  # (C, H, W) the operator saw
    info: dict[str, Any] = field(default_factory=dict)  # facts that are not parameters (encoder version)
    state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def spec(self) -> str:
        """Spec text with the exact levels, e.g. 'noise:sigma=37.25,clip=false,...'."""
        return self.operator().level_text(self.levels)

    def operator(self):
        from restorekit.degrade.operator import build_operator

        return build_operator(self.op, self.levels)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "levels": self.levels, "seed": self.seed, "in_shape": self.in_shape, "info": self.info}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        return cls(
            op=data["op"],
            levels=dict(data["levels"]),
            seed=data.get("seed"),
            in_shape=list(data["in_shape"]) if data.get("in_shape") is not None else None,
            info=dict(data.get("info") or {}),
        )

    # -------------------------------------------------------------------------------------- re-apply

    def replay(self, x: torch.Tensor) -> torch.Tensor:
        """Apply this step again with its own seed (bit-exact for evaluation records)."""
        from restorekit.degrade.seeding import Context

        if self.seed is None:
            raise SpecError(f"{self.op}: this record came from the training path (no seed) and cannot be replayed")
        out, _ = self.operator().apply(x, [self.levels], Context.for_seed(self.seed))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable re-application; random structure comes from `state` or is regenerated."""
        op = self.operator()
        if not op.differentiable:
            return op.forward(x, self.levels, {})  # raises NotDifferentiableError
        state = self.state or self._regenerate_state(op, x)
        return op.forward(x, self.levels, state)

    def _regenerate_state(self, op, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rebuild masks/kernels by re-running the operator on zeros with the recorded seed."""
        from restorekit.degrade.seeding import Context

        if not getattr(op, "needs_state", False):
            return {}
        if self.seed is None:
            raise SpecError(f"{self.op}: no seed and no stored state to rebuild the operator from")
        shape = self.in_shape or list(x.shape[-3:])
        zeros = torch.zeros((1, *shape), dtype=torch.float64)
        _, extras = op.apply(zeros, [self.levels], Context.for_seed(self.seed))
        return {k: v for k, v in extras[0].items() if isinstance(v, torch.Tensor)}


@dataclass
class Region:
    """One SHDD block: a box (top, left, bottom, right; bottom/right exclusive) and its distortion."""

    box: tuple[int, int, int, int]
    type: str  # one of SHDD_POOL
    step: Step | None  # None for identity

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), "type": self.type, "step": None if self.step is None else self.step.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Region:
        step = data.get("step")
        return cls(tuple(data["box"]), data["type"], None if step is None else Step.from_dict(step))  # type: ignore[arg-type]


@dataclass
class Degradation:
    """The record of one degraded sample.

    `spec` is the pipeline's spec (ranges included); `steps` the operators applied, in order, with
    exact levels; `seed` the image seed (None on the training path); `regions` the SHDD blocks,
    applied before `steps`.
    """

    spec: str
    seed: int | None
    steps: list[Step] = field(default_factory=list)
    shape: list[int] | None = None  # clean image (C, H, W)
    regions: list[Region] | None = None
    level_name: str | None = None  # SHDD difficulty

    # ----------------------------------------------------------------------------------- summaries

    @property
    def type(self) -> str:
        """Degradation type, e.g. 'noise', 'blur+down+noise', 'shdd'."""
        names = [step.op for step in self.steps]
        if self.regions is not None:
            names = ["shdd", *[n for n in names if n != "quantize"]]
        return "+".join(names) if names else "identity"

    @property
    def fixed_spec(self) -> str:
        """Spec text with the exact levels of this sample (for non-SHDD records)."""
        if self.regions is not None:
            return self.spec
        return "+".join(step.spec for step in self.steps) or "identity"

    @property
    def levels(self) -> list[dict[str, Any]]:
        return [dict(step.levels) for step in self.steps]

    @property
    def level(self) -> float | None:
        """The scalar level (sigma, quality, width, ...) when exactly one operator was applied."""
        if len(self.steps) != 1 or self.regions is not None:
            return None
        primary = self.steps[0].operator().primary
        return None if primary is None else self.steps[0].levels.get(primary)

    # -------------------------------------------------------------------------------------- json

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "spec": self.spec,
            "type": self.type,
            "fixed_spec": self.fixed_spec,
            "seed": self.seed,
            "shape": self.shape,
            "level": self.level_name,
            "steps": [step.to_dict() for step in self.steps],
            "regions": None if self.regions is None else [r.to_dict() for r in self.regions],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Degradation:
        if "degradation" in data and "steps" not in data:  # a CLI sidecar
            data = data["degradation"]
        if data.get("format") != RECORD_FORMAT:
            raise SpecError(f"not a degradation record (format {data.get('format')!r}, expected {RECORD_FORMAT!r})")
        regions = data.get("regions")
        return cls(
            spec=data["spec"],
            seed=data.get("seed"),
            steps=[Step.from_dict(s) for s in data.get("steps", [])],
            shape=list(data["shape"]) if data.get("shape") is not None else None,
            regions=None if regions is None else [Region.from_dict(r) for r in regions],
            level_name=data.get("level"),
        )

    @classmethod
    def from_json(cls, text: str) -> Degradation:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise SpecError(f"cannot read degradation record: {err}") from None

    # ---------------------------------------------------------------------------------- re-apply

    def replay(self, clean: torch.Tensor) -> torch.Tensor:
        """Regenerate the degraded image from the clean one (CHW), bit-exactly, from the seeds."""
        x = clean[None] if clean.dim() == 3 else clean
        if self.regions is not None:
            x = _composite(x, self.regions, lambda step, img: step.replay(img))
        for step in self.steps:
            x = step.replay(x)
        return x[0] if clean.dim() == 3 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable re-application of the same operators to `x` (CHW or BCHW).

        Noise-like steps are the ε of y = (W x)↓t + ε and act as identity here; quantisation is
        skipped; JPEG and non-local-means raise NotDifferentiableError.
        """
        batched = x.dim() == 4
        y = x if batched else x[None]
        if self.regions is not None:
            y = _composite(y, self.regions, lambda step, img: step.forward(img))
        for step in self.steps:
            y = step.forward(y)
        return y if batched else y[0]

    def region_map(self) -> torch.Tensor:
        """(H, W) int64 map: index into SHDD_POOL of the distortion applied at each pixel."""
        if self.regions is None or self.shape is None:
            raise SpecError("region_map() needs a spatially varying (shdd) record")
        out = torch.zeros(self.shape[-2:], dtype=torch.int64)
        for region in self.regions:
            top, left, bottom, right = region.box
            out[top:bottom, left:right] = SHDD_POOL.index(region.type)
        return out


def _composite(x: torch.Tensor, regions: list[Region], apply) -> torch.Tensor:
    """Each region's operator runs on the whole image (so blur sees real neighbours); its box is kept."""
    out = x.clone()
    for region in regions:
        if region.step is None:
            continue
        top, left, bottom, right = region.box
        degraded = apply(region.step, x)
        mask = torch.zeros_like(x[:1, :1])
        mask[..., top:bottom, left:right] = 1
        out = out * (1 - mask) + degraded * mask
    return out


class DegradationBatch(list):
    """The records of a training batch (a plain list of `Degradation`) with a batched `forward`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply each sample's own operator to the matching sample of `x` (B, C, H, W)."""
        if x.shape[0] != len(self):
            raise ValueError(f"forward: batch of {x.shape[0]} for {len(self)} records")
        return torch.cat([record.forward(x[i : i + 1]) for i, record in enumerate(self)], dim=0)

    def region_maps(self) -> torch.Tensor:
        """(B, H, W) ground-truth maps of a spatially varying batch."""
        return torch.stack([record.region_map() for record in self])
