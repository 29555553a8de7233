"""Where training and validation images come from, decoded once and kept in memory.

Users' complaint about BasicSR/KAIR is slow data loading (KAIR #129: "missed data preparation"). The
answer here is simple: training sets for these papers are small (Train400 is 13 MB decoded), so every
image is decoded once, stored as uint8 (4x smaller than float) and shared with the loader workers by
fork. Patches are then numpy slices, not file reads.

Three kinds of source:

* a folder of clean images in any of the usual layouts (plain, `HR/`, `GTmod12/`, `DIV2K_*_HR/`,
  SelfExSR's `image_SRF_*/*_HR.png`), or a paired folder holding `degraded/` and `clean/`;
* scikit-image's bundled photographs (no download, so a config runs anywhere);
* synthesised images (smooth shading, edges, texture) for tests and quick checks.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from restorekit import io, ops
from restorekit.data.pairs import is_paired_folder, match_pairs
from restorekit.errors import RestorekitError
from restorekit.io import to_tensor  # noqa: F401 - re-exported: (H, W, C) uint8 -> CHW float

# Sub-folders that hold the clean images in the common benchmark layouts (field-conventions 4.1).
CLEAN_SUBFOLDERS = ("HR", "GTmod12", "GT", "clean", "target")


@dataclass
class ImageSet:
    """Decoded images of one source: `clean[i]` (H, W, C) uint8; `degraded[i]` too for paired folders."""

    names: list[str]
    clean: list[np.ndarray]
    degraded: list[np.ndarray] | None = None
    origin: str = ""
    scale: int = 1  # paired folders: clean size / degraded size
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def paired(self) -> bool:
        return self.degraded is not None

    def min_side(self) -> int:
        return min(min(a.shape[:2]) for a in self.clean)


def find_clean_images(folder: Path) -> list[Path]:
    """Clean images of a folder in any of the usual layouts, sorted by name.

    Tries, in order: SelfExSR (`image_SRF_*/..._HR.*`, taking the smallest factor's copy), a known clean
    sub-folder (`HR`, `GTmod12`, ...), a `DIV2K_*_HR` sub-folder, then the folder itself.
    """
    srf = sorted(folder.glob("image_SRF_*"), key=lambda p: p.name)
    if srf:
        return sorted((p for p in io.list_images(srf[0]) if p.stem.endswith("_HR")), key=lambda p: p.name)
    for sub in CLEAN_SUBFOLDERS:
        if (folder / sub).is_dir():
            return io.list_images(folder / sub)
    hr = sorted(p for p in folder.glob("*_HR") if p.is_dir())
    if hr:
        return io.list_images(hr[0])
    return io.list_images(folder)


def to_channels(array: np.ndarray, channels: int | None, grey: str = "luma") -> np.ndarray:
    """(H, W, C) uint8 with the wanted channel count; grey to RGB by replication. RGB to grey by `grey`:
    'luma': full-range BT.601 (what PIL's convert('L') and cv2 do, so a grey model sees what users' grey
    images look like); 'y': MATLAB rgb2ycbcr's Y (studio swing 16..235, rounded), the Y channel on which
    the JPEG and SR benchmarks are run."""
    if grey not in ops.GREY_FORMULAS:
        raise RestorekitError(f"unknown grey conversion {grey!r}; choose one of {', '.join(ops.GREY_FORMULAS)}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 4:
        array = array[:, :, :3]
    have = array.shape[2]
    if channels is None or channels == have:
        return np.ascontiguousarray(array)
    if channels == 1 and have == 3:
        if grey == "y":
            luma = ops.rgb2y(array.astype(np.float64) / 255.0, ops.GREY_FORMULAS[grey]) * 255.0
        else:
            luma = array.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8).reshape(*array.shape[:2], 1)
    if channels == 3 and have == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    raise RestorekitError(f"cannot convert a {have}-channel image to {channels} channels")


def read_uint8(path: Path, channels: int | None, grey: str = "luma") -> np.ndarray:
    """Decode one file to (H, W, C) uint8 (16-bit files are rounded to 8 bits: training precision)."""
    tensor, _ = io.read_image(path)
    array = np.clip(np.rint(tensor.permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    return to_channels(array, channels, grey)


def load_folder(folder: Path, channels: int | None = None, limit: int | None = None, grey: str = "luma",
                exclude: Collection[str] = ()) -> ImageSet:
    """Every image of a clean or paired folder but those named in `exclude` (file names, with or without
    extension), decoded now (errors name the file)."""
    if is_paired_folder(folder):
        pairs = match_pairs(folder).pairs[:limit]  # unpaired or ambiguous names are an error naming them
        clean = [read_uint8(pair.clean, channels, grey) for pair in pairs]
        degraded = [read_uint8(pair.degraded, channels, grey) for pair in pairs]
        scales = {c.shape[0] // d.shape[0] for c, d in zip(clean, degraded)}
        if len(scales) != 1 or any(c.shape[0] != d.shape[0] * min(scales) or c.shape[1] != d.shape[1] * min(scales)
                                   for c, d in zip(clean, degraded)):
            raise RestorekitError(f"{folder}: degraded and clean images differ in size by no single integer factor")
        return ImageSet([pair.name for pair in pairs], clean, degraded, str(folder), scales.pop())
    paths = [p for p in find_clean_images(folder) if p.name not in exclude and p.stem not in exclude][:limit]
    if not paths:
        raise RestorekitError(f"{folder}: no images found")
    return ImageSet([p.name for p in paths], [read_uint8(p, channels, grey) for p in paths], origin=str(folder))


def pool(sets: list[ImageSet]) -> ImageSet:
    """Several clean sets as one (T91 + BSD200: every image once per epoch, whichever set it came from)."""
    if len(sets) == 1:
        return sets[0]
    paired = [s.origin for s in sets if s.paired]
    if paired:
        raise RestorekitError(f"{paired[0]}: a paired folder cannot be pooled with others (each gives its own inputs)")
    return ImageSet([n for s in sets for n in s.names], [a for s in sets for a in s.clean],
                    origin=" + ".join(s.origin for s in sets))


def at_least(images: ImageSet, side: int) -> ImageSet:
    """The images whose shorter side is at least `side` (the others cannot give a patch that large)."""
    keep = [i for i, a in enumerate(images.clean) if min(a.shape[:2]) >= side]
    degraded = [images.degraded[i] for i in keep] if images.paired else None
    return ImageSet([images.names[i] for i in keep], [images.clean[i] for i in keep], degraded, images.origin,
                    images.scale, images.extra)


SKIMAGE_NAMES = (
    "astronaut", "camera", "coffee", "chelsea", "coins", "moon", "page", "text", "rocket", "clock",
    "hubble_deep_field", "immunohistochemistry", "grass", "gravel", "brick", "cat", "colorwheel",
)


def load_skimage(names: list[str], channels: int | None = None, grey: str = "luma") -> ImageSet:
    """scikit-image's bundled photographs by name (all ship with the package: no download)."""
    from skimage import data

    unknown = [n for n in names if n not in SKIMAGE_NAMES]
    if unknown:
        raise RestorekitError(f"unknown scikit-image sample {unknown[0]!r}; choose from: {', '.join(SKIMAGE_NAMES)}")
    arrays = [to_channels(np.asarray(getattr(data, n)()), channels, grey) for n in names]
    return ImageSet([f"{n}.png" for n in names], arrays, origin="skimage")


def synthesize(count: int, size: int, channels: int = 3, seed: int = 0) -> ImageSet:
    """Deterministic test images with what restoration cares about: smooth shading, sharp edges, texture.

    Each image overlays a random colour gradient, a few filled rectangles and discs, and a sinusoidal
    texture patch, so noise/blur/JPEG have both flat and detailed regions to damage.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    images = []
    for _ in range(count):
        c0, c1 = rng.uniform(0.1, 0.9, (2, channels)).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.5) / 3
        image = c0 + (c1 - c0) * t[..., None]
        for _ in range(rng.integers(2, 5)):
            y0, x0 = rng.integers(0, size, 2)
            h, w = rng.integers(size // 8, size // 2, 2)
            image[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, channels)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0, 1, 2)
            r = rng.uniform(0.05, 0.25)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            image[disc] = rng.uniform(0, 1, channels)
        freq = rng.uniform(8, 30)
        wave = 0.15 * np.sin(2 * np.pi * freq * (xx + 0.5 * yy))
        region = (np.abs(yy - 0.5) < 0.2) & (np.abs(xx - rng.uniform(0.3, 0.7)) < 0.2)
        image = image + (wave * region)[..., None]
        images.append(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))
    return ImageSet([f"synthetic_{i:03d}.png" for i in range(count)], images, origin=f"synthetic(seed={seed})")


def center_crop(array: np.ndarray, size: int | None) -> np.ndarray:
    """Central size x size crop (or the whole image when smaller): keeps validation cheap and fair."""
    if not size:
        return array
    h, w = array.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return array[top:top + size, left:left + size]
