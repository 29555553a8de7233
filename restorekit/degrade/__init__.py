"""The degradation engine: every degradation type and level of the five papers, seeded, batched and,
where the physics allows, differentiable.

    from restorekit.degrade import parse_spec, image_seed, canonical_spec, Degradation
    pipe = parse_spec("blur:kind=gaussian,width=1.3+down:scale=4+noise:sigma=10")
    degraded, record = pipe.apply_one(clean_chw, seed=image_seed(0, "baby.png"))   # evaluation
    batch_out, records = pipe(batch_bchw, generator)                               # training
    record.to_json(); Degradation.from_json(text).replay(clean_chw); record.forward(x)

See docs/degradations.md for every operator, its parameters, ranges, defaults and sources.
"""

from __future__ import annotations

# Operator modules register themselves on import; the order is the order `operator_names()` lists.
from restorekit.degrade import blur, jpeg, masks, noise, resize, tone, weather  # noqa: F401
from restorekit.degrade.operator import (
    NotDifferentiableError,
    Operator,
    SizeError,
    all_operator_classes,
    operator_class,
    operator_names,
)
from restorekit.degrade.params import Choice, Fixed, Param, Uniform
from restorekit.degrade.pipeline import SHDD_LEVELS, Pipeline, Sequential, SpatiallyVarying, split_regions
from restorekit.degrade.record import SHDD_POOL, Degradation, DegradationBatch, Region, Step
from restorekit.degrade.seeding import Context, derive_seed, image_seed
from restorekit.degrade.spec import canonical_spec, factor_of, parse_spec, parse_stage

__all__ = [
    "SHDD_LEVELS",
    "SHDD_POOL",
    "Choice",
    "Context",
    "Degradation",
    "DegradationBatch",
    "Fixed",
    "NotDifferentiableError",
    "Operator",
    "Param",
    "Pipeline",
    "Region",
    "Sequential",
    "SizeError",
    "SpatiallyVarying",
    "Step",
    "Uniform",
    "all_operator_classes",
    "canonical_spec",
    "derive_seed",
    "factor_of",
    "image_seed",
    "operator_class",
    "operator_names",
    "parse_spec",
    "parse_stage",
    "split_regions",
]
