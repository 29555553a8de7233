"""Training patches: random crop + flip/rotation of cached images, degraded on the fly per sample.

A sample is fully described by its `SampleKey` (level, source, image, seed), so workers hold no state
and any process reproduces any sample. The degradation runs in the loader workers through the
degradation engine's training path with a per-sample torch.Generator seeded from the key; that keeps
the CPU busy in parallel with the model and makes samples independent of how the batch is split over
processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from restorekit import ops
from restorekit.data.augment import dihedral_numpy
from restorekit.data.samplers import SampleKey, mix_seed
from restorekit.data.sources import ImageSet
from restorekit.io import to_tensor


@dataclass
class Level:
    """One training level: a degradation spec applied to a source's clean images (or a paired source)."""

    name: str
    spec: str | None  # None: the source is paired and provides the degraded images
    source: int
    patch: int  # size of the clean (target) patch
    pipeline: object | None = None  # the parsed spec (restorekit.degrade pipeline), built at start-up
    scale: int = 1  # SR factor between the clean patch and the input (the model's `scale` condition)
    target_down: int = 1  # progressive SR stage: the target is the clean patch downscaled by this


def target_of(clean: torch.Tensor, down: int) -> torch.Tensor:
    """The training target of a progressive stage: the HR patch MATLAB-bicubic downscaled by `down` and
    rounded to 8 bits, as the HR image saved at that size (thesis Algorithm 1, targets of stages 1 and 2)."""
    if down == 1:
        return clean
    return ops.quantize(ops.downscale(clean.double(), down)).float()


FIELD_BITS = 21  # a 63-bit sample seed holds three independent 21-bit uniform fields


def seed_field(seed: int, index: int, bound: int) -> int:
    """Uniform integer in [0, bound) from bits [21*index, 21*index + 21) of a (hash-derived) sample seed.

    Cheaper than building a numpy Generator per patch (that alone is ~40 us, more than the crop), and
    still a pure function of the seed; the modulo bias is below bound / 2**21 (negligible for image sides).
    """
    return ((seed >> (FIELD_BITS * index)) & ((1 << FIELD_BITS) - 1)) % bound


def crop_box(height: int, width: int, size: int, seed: int, multiple: int = 1) -> tuple[int, int]:
    """Top-left corner of a random size x size crop; with `multiple` > 1 it is aligned for paired SR data."""
    top = seed_field(seed, 0, (height - size) // multiple + 1) * multiple
    left = seed_field(seed, 1, (width - size) // multiple + 1) * multiple
    return top, left


class PatchDataset(Dataset):
    """Map-style dataset indexed by `SampleKey`; returns {'lq', 'hq', 'level'} float CHW tensors."""

    def __init__(self, sources: list[ImageSet], levels: list[Level], *, scale: int = 1, flip: bool = True,
                 rot: bool = True, degrade: bool = True, records: bool = False):
        self.sources, self.levels, self.scale = sources, levels, scale
        self.flip, self.rot, self.degrade = flip, rot, degrade
        self.records = records  # samples carry their degradation record (a model taking it: DL-Net)

    def __len__(self) -> int:  # only for DataLoader's bookkeeping; indexing is by SampleKey
        return sum(len(s) for s in self.sources)

    def dihedral_code(self, seed: int) -> int:
        """0..7: bit 0 horizontal flip, bits 1-2 quarter turns (flip only: 0/1; rot only: even codes)."""
        if self.flip and self.rot:
            return seed_field(seed, 2, 8)
        if self.flip:
            return seed_field(seed, 2, 2)
        if self.rot:
            return 2 * seed_field(seed, 2, 4)
        return 0

    def clean_patch(self, key: SampleKey) -> tuple[np.ndarray, np.ndarray | None]:
        """(clean patch, degraded patch or None), both uint8 HWC, flipped/rotated identically."""
        level = self.levels[key.level]
        source = self.sources[key.source]
        clean = source.clean[key.image]
        size = level.patch
        if source.paired:
            s = source.scale
            degraded = source.degraded[key.image]
            top, left = crop_box(*clean.shape[:2], size, key.seed, multiple=s)
            hq = clean[top:top + size, left:left + size]
            lq = degraded[top // s:(top + size) // s, left // s:(left + size) // s]
        else:
            top, left = crop_box(*clean.shape[:2], size, key.seed)
            hq, lq = clean[top:top + size, left:left + size], None
        code = self.dihedral_code(key.seed)
        hq = dihedral_numpy(hq, code)
        lq = None if lq is None else dihedral_numpy(lq, code)
        return hq, lq

    def __getitem__(self, key: SampleKey) -> dict:
        hq_np, lq_np = self.clean_patch(key)
        hq = to_tensor(hq_np)
        record = None
        if lq_np is not None:
            lq = to_tensor(lq_np)
        elif self.degrade and self.levels[key.level].pipeline is not None:
            lq, record = degrade_recorded(self.levels[key.level].pipeline, hq, mix_seed(key.seed, "degrade"))
        else:
            lq = hq  # degraded later, on the training device (data.train.degrade_on: device)
        sample = {"lq": lq, "hq": target_of(hq, self.levels[key.level].target_down), "level": key.level}
        return {**sample, "record": record} if self.records else sample


def collate(samples: list[dict]) -> dict:
    """torch's default collation, with the samples' degradation records (when they carry them) kept as a
    list in batch order: a record is not a tensor."""
    if "record" not in samples[0]:
        return default_collate(samples)
    records = [sample["record"] for sample in samples]
    return {**default_collate([{k: v for k, v in s.items() if k != "record"} for s in samples]), "record": records}


def degrade_one(pipeline, image: torch.Tensor, seed: int) -> torch.Tensor:
    """One training sample through the pipeline's (fast, float32) training path with its own generator."""
    return degrade_recorded(pipeline, image, seed)[0]


def degrade_recorded(pipeline, image: torch.Tensor, seed: int) -> tuple[torch.Tensor, object]:
    """`degrade_one` and the sample's degradation record (`restorekit.degrade.Degradation`)."""
    generator = torch.Generator().manual_seed(seed)
    out, made = pipeline(image[None], generator)
    return out[0].to(torch.float32), made[0]


def degrade_batch(pipelines: list, lq: torch.Tensor, levels: torch.Tensor, generator: torch.Generator,
                  records: list | None = None) -> torch.Tensor:
    """Degrade a batch on its device, one pipeline call per level present (degrade_on: device); a given
    `records` list receives each sample's degradation record in batch order."""
    out = None
    if records is not None:
        records[:] = [None] * lq.shape[0]
    for level in torch.unique(levels).tolist():
        index = (levels == level).nonzero().flatten().to(lq.device)
        pipeline = pipelines[level]
        if pipeline is None:
            part = lq[index]
        else:
            part, made = pipeline(lq[index], generator)
            if records is not None:
                for position, record in zip(index.tolist(), made, strict=True):
                    records[position] = record
        if out is None:
            out = torch.empty((lq.shape[0], *part.shape[1:]), dtype=part.dtype, device=lq.device)
        out[index] = part
    return out
