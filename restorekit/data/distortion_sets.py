"""Flickr-Distortion-style recognition sets over any folder of clean images (thesis ch. 6; spec methods-thesis.md
5.1; issue 18 item 1): what the distortion classifier and detector train and test on.

* `classification`: every source image centre-cropped to `crop` and distorted whole by each of the 8 types at each
  of its 3 levels (24 images per source), split 60/20/20 BY SOURCE (the thesis splits the 19,296 images at random;
  by source no test image shares its content with a training one -- `split_by="image"` gives the thesis's).
* `basic` / `difficult` detection: a centre crop (300x300, SSD's input) is distorted in 1-4 boxes with side ratios
  in [0.3, 0.7] (basic) or 5-9 boxes in [0.1, 0.3] (difficult), each box one type at a level drawn uniformly
  between its mildest and strongest, 20 versions per source, split 80/20 by source. Not stated in the thesis and
  pinned here: boxes are axis-aligned and do not overlap (placed by rejection, fewer when a crop is full), the
  type is drawn per box, and the width and height ratios are drawn independently.

Every image is seeded by (seed, source name, version), written atomically, and skipped when present, so a
stopped run resumes; `labels.json` lists every image with its split and distortions
(`{"type", "level", "box": [x0, y0, x1, y1]}`, type names from restorekit.degrade.distortions) and is written last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from restorekit.atomic import write_json
from restorekit.degrade import derive_seed, image_seed, parse_spec
from restorekit.degrade.distortions import FLICKR_DISTORTIONS, DistortionType
from restorekit.errors import RestorekitError

KINDS = ("classification", "basic", "difficult")
DETECTION = {"basic": ((1, 4), (0.3, 0.7)), "difficult": ((5, 9), (0.1, 0.3))}  # region count, side ratio
SPLITS = {"classification": (("train", 0.6), ("val", 0.2), ("test", 0.2)),
          "basic": (("train", 0.8), ("test", 0.2)), "difficult": (("train", 0.8), ("test", 0.2))}


@dataclass(frozen=True)
class Box:
    """One distorted region: its type, the level drawn (the operator's own parameter), and its pixels."""

    kind: DistortionType
    level: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    level_index: int | None = None  # 0/1/2 on the classification set's fixed levels

    def label(self) -> dict:
        extra = {} if self.level_index is None else {"level_index": self.level_index}
        return {"type": self.kind.name, "level": self.level, "box": list(self.box), **extra}


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor | None:
    """The central size x size crop of a CHW image; None when the image is smaller."""
    height, width = image.shape[-2:]
    if height < size or width < size:
        return None
    top, left = (height - size) // 2, (width - size) // 2
    return image[..., top:top + size, left:left + size]


def split_of(kind: str, sources: list[str], seed: int) -> dict[str, str]:
    """Source name -> split, a seeded permutation cut at the kind's fractions."""
    order = np.random.default_rng(derive_seed(seed, "split", kind)).permutation(len(sources))
    names = [sources[i] for i in order]
    result, start = {}, 0
    for index, (split, fraction) in enumerate(SPLITS[kind]):
        end = len(names) if index == len(SPLITS[kind]) - 1 else start + round(fraction * len(names))
        result.update({name: split for name in names[start:end]})
        start = end
    return result


def place_boxes(rng: np.random.Generator, size: int, count: int, ratios: tuple[float, float],
                tries: int = 200) -> list[tuple[int, int, int, int]]:
    """Up to `count` non-overlapping axis-aligned boxes with side ratios in `ratios` (rejection sampling)."""
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(tries):
        if len(boxes) == count:
            break
        width, height = (max(1, int(round(rng.uniform(*ratios) * size))) for _ in range(2))
        x0, y0 = int(rng.integers(0, size - width + 1)), int(rng.integers(0, size - height + 1))
        box = (x0, y0, x0 + width, y0 + height)
        if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
            boxes.append(box)
    return boxes


def distort(image: torch.Tensor, spec: str, seed: int) -> tuple[torch.Tensor, float]:
    """The whole image through one operator spec, rounded to 8 bits as a saved file; and the level drawn."""
    out, record = parse_spec(spec).apply_one(image, seed)
    parameter = spec.split(":", 1)[1].split("=", 1)[0]
    return (out.clamp(0, 1) * 255).round() / 255, float(record.steps[0].levels[parameter])


def classification_items(name: str, clean: torch.Tensor, seed: int) -> Iterator[tuple[str, torch.Tensor, list[Box]]]:
    """The 24 whole-image versions of one source: (file stem suffix, image, [its one Box])."""
    size = clean.shape[-1]
    for kind in FLICKR_DISTORTIONS:
        for index, level in enumerate(kind.levels):
            image, drawn = distort(clean, kind.spec(level), derive_seed(image_seed(seed, name), kind.name, index))
            yield f"{kind.name}_{index}", image, [Box(kind, drawn, (0, 0, size, size), index)]


def detection_items(name: str, clean: torch.Tensor, seed: int, kind: str, versions: int
                    ) -> Iterator[tuple[str, torch.Tensor, list[Box]]]:
    """`versions` region-distorted versions of one (square) source crop."""
    (low, high), ratios = DETECTION[kind]
    size = clean.shape[-1]
    for version in range(versions):
        version_seed = derive_seed(image_seed(seed, name), kind, version)
        rng = np.random.default_rng(version_seed)
        count = int(rng.integers(low, high + 1))
        image, boxes = clean.clone(), []
        for index, (x0, y0, x1, y1) in enumerate(place_boxes(rng, size, count, ratios)):
            distortion = FLICKR_DISTORTIONS[int(rng.integers(len(FLICKR_DISTORTIONS)))]
            distorted, drawn = distort(clean, distortion.range_spec(), derive_seed(version_seed, "region", index))
            image[..., y0:y1, x0:x1] = distorted[..., y0:y1, x0:x1]
            boxes.append(Box(distortion, drawn, (x0, y0, x1, y1)))
        yield f"{version:02d}", image, boxes


def generate(kind: str, sources: list[tuple[str, Callable[[], torch.Tensor]]], out: Path, *, crop: int | None = None,
             versions: int = 20, seed: int = 0, split_by: str = "source",
             on_image: Callable[[str], None] | None = None) -> dict:
    """Write the `kind` set for `sources` ((name, loader) pairs) under `out`; returns the labels written."""
    from restorekit import io

    if kind not in KINDS:
        raise RestorekitError(f"unknown set {kind!r}; one of {', '.join(KINDS)}")
    crop = crop or (224 if kind == "classification" else 300)
    names = [name for name, _ in sources]
    splits = split_of(kind, names, seed)
    items, skipped = [], []
    for name, load in sources:
        clean = centre_crop(load(), crop)
        if clean is None:
            skipped.append(name)
            continue
        stem = Path(name).with_suffix("").as_posix().replace("/", "_")
        made = classification_items(name, clean, seed) if kind == "classification" else \
            detection_items(name, clean, seed, kind, versions)
        for suffix, image, boxes in made:
            rel = f"images/{stem}_{suffix}.png"
            if not (out / rel).exists():
                io.write_image(out / rel, image)
            items.append({"file": rel, "source": name, "distortions": [b.label() for b in boxes]})
            if on_image is not None:
                on_image(rel)
    if split_by == "image":  # the thesis's random split of the images themselves
        image_splits = split_of(kind, [item["file"] for item in items], seed)
        for item in items:
            item["split"] = image_splits[item["file"]]
    else:
        for item in items:
            item["split"] = splits[item["source"]]
    labels = {"kind": kind, "crop": crop, "seed": seed, "split_by": split_by,
              "types": [d.name for d in FLICKR_DISTORTIONS],
              "levels": {d.name: list(d.levels) for d in FLICKR_DISTORTIONS},
              "skipped_smaller_than_crop": skipped, "items": items}
    write_json(out / "labels.json", labels)
    return labels
