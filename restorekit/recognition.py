"""What the distortion recogniser's per-pixel output means (thesis ch. 6; issue 18 items 2 and 4): its classes,
the label maps it trains on, and the regions, boxes and levels `restorekit analyze` reports.

Classes: `identity` (undistorted) then, for each Flickr-Distortion type in the vocabulary's order
(`restorekit.degrade.distortions.FLICKR_DISTORTIONS`), its 3 levels mild -> strong: 25 in all. A detection set's
levels are drawn between the mildest and the strongest; they are labelled with the nearest of the 3 (in log
space: the thesis's levels are roughly geometric, x2 per step), and a region's reported level interpolates between
them the same way.

Regions (the detector's "segmentation to boxes"): every pixel takes its most probable type (the sum of the type's
level probabilities); each connected region of one type (8-connectivity, `scipy.ndimage.label`) with at least
`min_area` of the image becomes one distortion: its bounding box, its score (the region's mean probability of
that type) and its level (the probability-weighted level index over the region). Touching boxes of one type merge
into one region: a known limit of this design, seen on the difficult set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from restorekit.degrade.distortions import FLICKR_DISTORTIONS, DistortionType, distortion

if TYPE_CHECKING:
    from restorekit.models import Model

CLEAN = "identity"
LEVELS_PER_TYPE = 3
TYPES: tuple[str, ...] = tuple(d.name for d in FLICKR_DISTORTIONS)
CLASSES: tuple[str, ...] = (CLEAN, *(f"{t}@{i}" for t in TYPES for i in range(LEVELS_PER_TYPE)))
MIN_AREA = 0.005  # the smallest region reported, as a fraction of the image (difficult-set boxes are >= 1%)
# `analyze` reports regions at least this sure of their type (scoring keeps every region: mAP). Measured with the
# bundled recogniser on 100 images of the detection-basic TRAIN split: at 0.4 it keeps 98% of the regions that
# match a true box (IoU >= 0.5, right type) at precision 0.33; at 0.5 only 76% (precision 0.42).
REPORT_SCORE = 0.4


def class_index(type_name: str, level_index: int) -> int:
    """The class of one type at one of its 3 levels (0 = identity)."""
    if type_name == CLEAN:
        return 0
    return 1 + TYPES.index(type_name) * LEVELS_PER_TYPE + level_index


def level_index_of(kind: DistortionType, level: float) -> int:
    """The nearest of the type's 3 levels to a drawn level, in log space."""
    distances = [abs(math.log(level / value)) for value in kind.levels]
    return int(np.argmin(distances))


def level_value(kind: DistortionType, position: float) -> float:
    """The operator parameter at a fractional level index (0 = mildest, 2 = strongest), geometric between levels."""
    position = min(max(position, 0.0), len(kind.levels) - 1.0)
    low = min(int(position), len(kind.levels) - 2)
    t = position - low
    value = math.exp((1 - t) * math.log(kind.levels[low]) + t * math.log(kind.levels[low + 1]))
    return float(round(value)) if kind.integer else value


def label_map(height: int, width: int, distortions: list[dict]) -> torch.Tensor:
    """The per-pixel class map (H, W) of one labelled image (labels.json's `distortions`)."""
    labels = torch.zeros(height, width, dtype=torch.long)
    for item in distortions:
        kind = distortion(item["type"])
        index = item.get("level_index")
        index = level_index_of(kind, item["level"]) if index is None else index
        x0, y0, x1, y1 = item["box"]
        labels[y0:y1, x0:x1] = class_index(kind.name, index)
    return labels


def type_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """(B?, 25, H, W) class probabilities -> (B?, 9, H, W): identity, then each type's levels summed."""
    clean, levels = probabilities[..., :1, :, :], probabilities[..., 1:, :, :]
    shape = (*levels.shape[:-3], len(TYPES), LEVELS_PER_TYPE, *levels.shape[-2:])
    return torch.cat([clean, levels.reshape(shape).sum(-3)], dim=-3)


@dataclass(frozen=True)
class Found:
    """One distortion found in an image: `analyze`'s JSON entry."""

    type: str
    level: float  # the operator's own parameter (JPEG quality, blur sigma, noise variance, ...)
    level_index: float  # 0 = the thesis's mildest level .. 2 = its strongest
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), pixels
    score: float
    area: float  # fraction of the image the region covers

    def to_json(self) -> dict:
        return {"type": self.type, "level": round(self.level, 4), "level_index": round(self.level_index, 2),
                "box": list(self.box), "score": round(self.score, 4), "area": round(self.area, 4)}


def find_distortions(probabilities: torch.Tensor, min_area: float = MIN_AREA, min_score: float = 0.0) -> list[Found]:
    """The regions of one image's (25, H, W) class probabilities, the most evidence (score x area) first: what
    is wrong with most of the image leads, a small confident patch follows."""
    from scipy import ndimage

    per_type = type_probabilities(probabilities)
    winner = per_type.argmax(0).numpy()
    height, width = winner.shape
    found = []
    for t, name in enumerate(TYPES, start=1):
        regions, _ = ndimage.label(winner == t, structure=np.ones((3, 3)))
        for index, window in enumerate(ndimage.find_objects(regions), start=1):
            inside = torch.from_numpy(regions[window] == index)
            area = float(inside.sum()) / (height * width)
            if area < min_area:
                continue
            levels = probabilities[1 + (t - 1) * LEVELS_PER_TYPE: 1 + t * LEVELS_PER_TYPE][:, window[0], window[1]]
            mass = levels[:, inside].sum(1)
            position = float((mass * torch.arange(LEVELS_PER_TYPE)).sum() / mass.sum().clamp_min(1e-12))
            score = float(per_type[t][window][inside].mean())
            if score < min_score:
                continue
            box = (window[1].start, window[0].start, window[1].stop, window[0].stop)
            found.append(Found(name, level_value(distortion(name), position), position, box, score, area))
    return sorted(found, key=lambda f: -f.score * f.area)


def classify(probabilities: torch.Tensor) -> tuple[str, int]:
    """Whole-image classification (the thesis's classification set): the most probable of the 24 distortion
    classes averaged over the pixels (identity left out: every image there is distorted)."""
    mean = probabilities.mean(dim=(-2, -1))
    best = int(mean[1:].argmax()) + 1
    return CLASSES[best].split("@")[0], int(CLASSES[best].split("@")[1])


def recognise(model: Model, image: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """The (25, H, W) class probabilities of one CHW image in [0, 1] (grey is replicated to RGB)."""
    from restorekit import infer

    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    with torch.no_grad():
        logits = infer.run_model(model, image[:3], device=device)
    return logits.softmax(0)
