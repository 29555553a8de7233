"""Training data: image sources, patch datasets with on-the-fly degradation, level-sampling strategies,
and augmentations (flips/rotations, CutBlur, MoA). See docs/training.md."""

from restorekit.data.augment import MoA, cutblur, dihedral
from restorekit.data.datasets import Level, PatchDataset
from restorekit.data.samplers import (
    STRATEGIES,
    LevelStrategy,
    SampleKey,
    StepBatchSampler,
    StepPlan,
    build_strategy,
    on_demand_shares,
)
from restorekit.data.sources import ImageSet, load_folder, load_skimage, synthesize

__all__ = [
    "STRATEGIES", "ImageSet", "Level", "LevelStrategy", "MoA", "PatchDataset", "SampleKey", "StepBatchSampler",
    "StepPlan", "build_strategy", "cutblur", "dihedral", "load_folder", "load_skimage", "on_demand_shares",
    "synthesize",
]
