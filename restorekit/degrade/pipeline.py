"""Composition: `Sequential` (operators in order, optionally a random subset of them, as MBN's mixed
dataset) and `SpatiallyVarying` (SHDD: regions with different distortions and a ground-truth map).

Both offer the two entry points every caller uses:

* `apply_one(clean_chw, seed) -> (degraded_chw, Degradation)`: evaluation; deterministic in `seed`;
* `pipe(batch_bchw, generator) -> (batch, DegradationBatch)`: training; levels drawn per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from restorekit.degrade.linear import quantize_
from restorekit.degrade.operator import Operator
from restorekit.degrade.params import Value, possible_values
from restorekit.degrade.record import SHDD_POOL, Degradation, DegradationBatch, Region, Step
from restorekit.degrade.seeding import Context, check_seed, derive_seed, level_rng, training_host_rng
from restorekit.errors import SpecError


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"apply_one expects one CHW image tensor, got {shape}")
    if not image.is_floating_point():
        raise TypeError(f"apply_one expects a float image in [0, 1], got {image.dtype}")


def _check_batch(batch: torch.Tensor) -> None:
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"a pipeline call expects a BCHW batch tensor, got {shape}")
    if not batch.is_floating_point():
        raise TypeError(f"expected a float batch in [0, 1], got {batch.dtype}")


def _training_context(batch: torch.Tensor, generator: torch.Generator | None) -> Context:
    if generator is None:
        generator = torch.Generator(device=batch.device)
        generator.seed()
    return Context(host=training_host_rng(generator), generator=generator)


def _split_extras(extras: dict) -> tuple[dict, dict]:
    """Tensors are state (kept in memory for forward), everything else is JSON info."""
    state = {k: v for k, v in extras.items() if isinstance(v, torch.Tensor)}
    info = {k: v for k, v in extras.items() if not isinstance(v, torch.Tensor)}
    return info, state


class Pipeline:
    """Common interface of everything `parse_spec` returns."""

    spec: str

    def apply_one(self, clean: torch.Tensor, seed: int) -> tuple[torch.Tensor, Degradation]:
        raise NotImplementedError

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, DegradationBatch]:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    def record_for(self, shape: Sequence[int]) -> Degradation:
        """The record this degradation makes of a clean (C, H, W) image, without the image: what a
        record-taking model (DL-Net) is given when only the degraded photo is at hand (`restore`). Only
        specs whose forward operator the text fully determines qualify: fixed levels, and no operator whose
        forward needs random structure (a random mask or kernel) that a spec alone cannot say; noise is
        the ε of y = D(x) + ε and does not enter the record's forward."""
        fixed = getattr(self, "is_fixed", False)
        random = [op.label() for op in getattr(self, "stages", ()) if getattr(op, "needs_state", False)]
        if not fixed or random:
            why = f"{', '.join(random)} draws a random mask or kernel" if random else "its levels are not fixed"
            raise SpecError(f"{self.spec!r} cannot describe a given image's degradation ({why}): give fixed "
                            "levels of deterministic operators, e.g. 'blur:kind=gaussian,width=1.3+down:scale=2'")
        return self.apply_one(torch.zeros(tuple(int(n) for n in shape)), seed=0)[1]


class Sequential(Pipeline):
    """Operators applied in order; with `subset`, each sample keeps k of them (k drawn from `subset`,
    stages chosen uniformly without replacement, order preserved: MBN's 1..4 mixed factors)."""

    def __init__(self, stages: Sequence[Operator], subset: Value | None = None, spec: str | None = None):
        if not stages:
            raise SpecError("empty spec: give at least one operator")
        self.stages = list(stages)
        self.subset = subset
        if subset is not None:
            sized = [op.label() for op in self.stages if op.changes_size]
            if sized:
                raise SpecError(f"subset: size-changing operators cannot be optional ({', '.join(sized)})")
            counts = possible_values(subset) or ()
            if any(k > len(self.stages) for k in counts):
                raise SpecError(f"subset: k={subset.text()} exceeds the {len(self.stages)} operators that follow")
        body = "+".join(op.spec_text() for op in self.stages)
        self.spec = spec or (f"subset:k={subset.text()}+{body}" if subset is not None else body)

    @property
    def is_fixed(self) -> bool:
        """True when every level is fixed (no ranges, no subset): apply_one then ignores the seed
        except for the operators' own random streams (noise, masks)."""
        return self.subset is None and all(op.is_fixed for op in self.stages)

    def _chosen(self, rng: np.random.Generator) -> list[int]:
        if self.subset is None:
            return list(range(len(self.stages)))
        k = int(self.subset.sample(rng))
        return sorted(int(i) for i in rng.choice(len(self.stages), size=k, replace=False))

    @staticmethod
    def stage_seed(seed: int, index: int) -> int:
        """Stage 0 draws from the image seed itself, so a single-operator spec reproduces the reference
        protocols (KAIR: np.random.seed(seed) per image); later stages get derived seeds."""
        return seed if index == 0 else derive_seed(seed, "stage", index)

    def apply_one(self, clean: torch.Tensor, seed: int) -> tuple[torch.Tensor, Degradation]:
        _check_image(clean)
        seed = check_seed(seed)
        x = clean[None]
        steps = []
        for index in self._chosen(level_rng(seed, "subset")):
            op = self.stages[index]
            level = op.sample_level(level_rng(seed, index))
            stage_seed = self.stage_seed(seed, index)
            in_shape = list(x.shape[1:])
            x, extras = op.apply(x, [level], Context.for_seed(stage_seed))
            info, state = _split_extras(extras[0])
            steps.append(Step(op.name, level, stage_seed, in_shape, info, state))
        return x[0], Degradation(self.spec, seed, steps, list(clean.shape))

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, DegradationBatch]:
        _check_batch(batch)
        ctx = _training_context(batch, generator)
        size = batch.shape[0]
        chosen = [set(self._chosen(ctx.host)) for _ in range(size)] if self.subset is not None else None
        steps: list[list[Step]] = [[] for _ in range(size)]
        x = batch
        for index, op in enumerate(self.stages):
            members = list(range(size)) if chosen is None else [i for i in range(size) if index in chosen[i]]
            if not members:
                continue
            if op.changes_size:
                levels = [op.sample_level(ctx.host)] * len(members)
            else:
                levels = [op.sample_level(ctx.host) for _ in members]
            in_shape = list(x.shape[1:])
            part = x if len(members) == size else x[members]
            out, extras = op.apply(part, levels, ctx)
            if len(members) == size:
                x = out
            else:
                x = x.clone()
                x[members] = out
            for sample, level, extra in zip(members, levels, extras):
                info, state = _split_extras(extra)
                steps[sample].append(Step(op.name, level, None, in_shape, info, state))
        shape = list(batch.shape[1:])
        return x, DegradationBatch(Degradation(self.spec, None, s, shape) for s in steps)


# -------------------------------------------------------------------------------------------- SHDD

SHDD_LEVELS = {"easy": 2, "moderate": 3, "difficult": 4}

# The SHDD pool (thesis Sec. 7.3): strengths drawn uniformly from these ranges; identity included.
SHDD_OPERATORS = {
    "noise": "noise:var=0.005..0.02,clip=true",
    "blur": "blur:kind=gaussian,width=1.0..2.5",
    "pink": "pink:scale=6..10,clip=true",
    "contrast": "contrast:level=25..40",
}


def split_regions(rng: np.random.Generator, height: int, width: int, count: int) -> list[tuple[int, int, int, int]]:
    """Cut the image into `count` axis-aligned boxes with random horizontal/vertical lines.

    Guillotine cuts: repeatedly pick a box (probability ∝ area), cut it across its longer or shorter
    side (probability ∝ side length) at a uniform position within its middle half. Boxes are
    (top, left, bottom, right), bottom/right exclusive, and tile the image.
    """
    boxes = [(0, 0, height, width)]
    while len(boxes) < count:
        areas = np.array([(b - t) * (r - left) for t, left, b, r in boxes], dtype=np.float64)
        cuttable = [i for i, (t, left, b, r) in enumerate(boxes) if b - t >= 2 or r - left >= 2]
        if not cuttable:
            raise SpecError(f"shdd: a {height}x{width} image cannot hold {count} regions")
        weights = areas[cuttable] / areas[cuttable].sum()
        top, left, bottom, right = boxes.pop(cuttable[int(rng.choice(len(cuttable), p=weights))])
        tall, wide = bottom - top, right - left
        horizontal_cut = rng.uniform(0, tall + wide) < tall if (tall >= 2 and wide >= 2) else tall >= 2
        if horizontal_cut:
            cut = top + int(rng.integers(max(1, tall // 4), max(2, tall - tall // 4 + 1)))
            cut = min(max(cut, top + 1), bottom - 1)
            boxes += [(top, left, cut, right), (cut, left, bottom, right)]
        else:
            cut = left + int(rng.integers(max(1, wide // 4), max(2, wide - wide // 4 + 1)))
            cut = min(max(cut, left + 1), right - 1)
            boxes += [(top, left, bottom, cut), (top, cut, bottom, right)]
    return sorted(boxes)


class SpatiallyVarying(Pipeline):
    """SHDD: the image is split into 2/3/4 regions (easy/moderate/difficult); each region gets one
    distortion of the pool (identity, Gaussian noise, Gaussian blur, pink noise, contrast change,
    uniformly) at a level drawn from the thesis's ranges. The record's `region_map()` is the
    per-pixel ground truth. Output is rounded to uint8 levels (SHDD ships PNGs) unless quantize=false."""

    def __init__(self, level: Value, regions: Value | None = None, quantize: bool = True, spec: str | None = None):
        self.level = level
        self.regions = regions
        self.quantize = quantize
        self.pool = {name: _parse_single(text) for name, text in SHDD_OPERATORS.items()}
        parts = [f"level={level.text()}"] + ([f"regions={regions.text()}"] if regions is not None else [])
        parts += [] if quantize else ["quantize=false"]
        self.spec = spec or f"shdd:{','.join(parts)}"

    def _plan(self, rng: np.random.Generator, seed: int | None, height: int, width: int) -> tuple[str, list[Region]]:
        """Draw the difficulty, the cut, and one distortion (type, level, seed) per region."""
        level_name = str(self.level.sample(rng))
        count = int(self.regions.sample(rng)) if self.regions is not None else SHDD_LEVELS[level_name]
        regions = []
        for index, box in enumerate(split_regions(rng, height, width, count)):
            kind = SHDD_POOL[int(rng.integers(len(SHDD_POOL)))]
            if kind == "identity":
                regions.append(Region(box, kind, None))
                continue
            op = self.pool[kind]
            region_seed = derive_seed(seed, "region", index) if seed is not None else None
            regions.append(Region(box, kind, Step(op.name, op.sample_level(rng), region_seed, None)))
        return level_name, regions

    def _final_steps(self, seed: int | None) -> list[Step]:
        return [Step("quantize", {"levels": 256}, seed, None)] if self.quantize else []

    def apply_one(self, clean: torch.Tensor, seed: int) -> tuple[torch.Tensor, Degradation]:
        _check_image(clean)
        seed = check_seed(seed)
        level_name, regions = self._plan(level_rng(seed, "shdd"), seed, *clean.shape[-2:])
        for region in regions:
            if region.step is not None:
                region.step.in_shape = list(clean.shape)
        record = Degradation(self.spec, seed, self._final_steps(seed), list(clean.shape), regions, level_name)
        for step in record.steps:
            step.in_shape = list(clean.shape)
        return record.replay(clean), record

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, DegradationBatch]:
        """Training path: plan every sample, then run each distortion type once on all the samples
        (whole images) that have a region of that type, and paste each region's box."""
        _check_batch(batch)
        ctx = _training_context(batch, generator)
        shape = list(batch.shape[1:])
        plans = [self._plan(ctx.host, None, *shape[-2:]) for _ in range(batch.shape[0])]
        out = batch.clone()
        for kind, op in self.pool.items():
            jobs = [(i, region) for i, (_, regions) in enumerate(plans) for region in regions if region.type == kind]
            if not jobs:
                continue
            degraded, _ = op.apply(batch[[i for i, _ in jobs]], [region.step.levels for _, region in jobs], ctx)
            for j, (i, region) in enumerate(jobs):
                top, left, bottom, right = region.box
                out[i, :, top:bottom, left:right] = degraded[j, :, top:bottom, left:right]
                region.step.in_shape = shape
        steps = self._final_steps(None)
        if steps:
            quantize_(out)
            steps[0].in_shape = shape
        records = DegradationBatch(
            Degradation(self.spec, None, [Step(s.op, dict(s.levels), None, shape) for s in steps], shape, regions, level_name)
            for level_name, regions in plans
        )
        return out, records


def _parse_single(text: str) -> Operator:
    from restorekit.degrade.spec import parse_stage

    return parse_stage(text)
