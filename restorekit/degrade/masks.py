"""Missing-pixel operators: DL-Net/On-Demand square holes, RED-Net text and scratches, free-form masks,
and Bernoulli pixel removal (interpolation).

Each builds a binary mask M (1 = observed, shared across channels) and returns
y = M ⊙ x + (1 − M) ⊙ fill. With the default fill 'zero' this is DL-Net's W x = M ⊙ x, and `forward`
re-applies the same mask (kept in the record's state, or regenerated from the seed).
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from restorekit.degrade.operator import Extras, Level, Operator, SizeError, register, set_default_kind
from restorekit.degrade.params import Param
from restorekit.degrade.seeding import Context

# On-Demand Learning fills holes with the ImageNet mean colour (117, 104, 123).
MEAN_COLOUR = (117 / 255, 104 / 255, 123 / 255)
FILL_OPTIONS = ("zero", "mean", "white")


def fill_tensor(fill: str, like: torch.Tensor) -> torch.Tensor:
    """(C, 1, 1) fill colour; 'mean' on a grey image is the mean of the three channels."""
    channels = like.shape[-3]
    if fill == "zero":
        values = [0.0] * channels
    elif fill == "white":
        values = [1.0] * channels
    else:
        values = list(MEAN_COLOUR) if channels == 3 else [sum(MEAN_COLOUR) / 3] * channels
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(channels, 1, 1)


def fill_param(default: str) -> Param:
    return Param("fill", "str", "value of missing pixels: zero (DL-Net), mean (On-Demand), white", default=default, options=FILL_OPTIONS)


class _MaskOperator(Operator):
    """y = M ⊙ x + (1 − M) ⊙ fill, with one mask per sample; subclasses draw the masks."""

    differentiable = True
    needs_state = True

    def masks(self, shape: tuple[int, int], levels: Sequence[Level], ctx: Context, like: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) masks in `like`'s dtype and device, 1 = observed."""
        raise NotImplementedError

    def apply(self, x: torch.Tensor, levels: Sequence[Level], ctx: Context) -> tuple[torch.Tensor, list[Extras]]:
        masks = self.masks(tuple(x.shape[-2:]), levels, ctx, x)
        fill_names = [lv["fill"] for lv in levels]
        if all(f == fill_names[0] for f in fill_names):
            fills = fill_tensor(fill_names[0], x)
        else:
            fills = torch.stack([fill_tensor(f, x) for f in fill_names])
        # Binary masks: selecting is exactly M ⊙ x + (1 − M) ⊙ fill, in one pass.
        out = torch.where(masks > 0.5, x, fills)
        return out, [{"mask": masks[i]} for i in range(len(levels))]

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mask = state["mask"].to(x.device, x.dtype)
        return mask * x + (1 - mask) * fill_tensor(level["fill"], x)


def _from_numpy_masks(masks: list[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    """Stack per-sample (H, W) masks (1 = observed) into a (B, 1, H, W) tensor like `like`."""
    return torch.from_numpy(np.stack(masks)[:, None]).to(like.device, like.dtype)


def _observed(canvas: np.ndarray) -> np.ndarray:
    """Drawn canvas (255 = drawn) -> mask, 1 where not drawn."""
    return (canvas < 128).astype(np.float32)


# ------------------------------------------------------------------------------------- square hole


@register
class SquareHole(_MaskOperator):
    """A size×size hole whose centre is shifted by (dx, dy) ∈ [−shift, shift]² from the image centre."""

    name = "inpaint"
    kind = "square"
    primary = "size"
    summary = "square hole"
    source = "DL-Net / On-Demand: s∈{1..30}, centre shifted ±10 px on 64×64; reference model s=32"
    needs_state = False  # the hole is fully determined by the levels
    params = (
        Param("size", "int", "side of the square in pixels", default="1..30", low=1, high=100000),
        Param("shift", "int", "largest random offset of the centre on each axis (0 = centred)", default="10", low=0, high=100000),
        Param("dx", "int", "horizontal offset of the centre (drawn from ±shift when absent)", default=None, low=-100000, high=100000),
        Param("dy", "int", "vertical offset of the centre (drawn from ±shift when absent)", default=None, low=-100000, high=100000),
        fill_param("zero"),
    )

    def sample_level(self, rng: np.random.Generator) -> Level:
        """The drawn offsets become part of the level, so a record replays the same hole."""
        level = super().sample_level(rng)
        for axis in ("dx", "dy"):
            if axis not in level:
                level[axis] = int(rng.integers(-level["shift"], level["shift"] + 1))
        return level

    @staticmethod
    def box(height: int, width: int, level: Level) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the hole, clipped to the image."""
        size = level["size"]
        if size > min(height, width):
            raise SizeError(f"inpaint:kind=square: size={size} does not fit a {height}x{width} image")
        top = (height - size) // 2 + level["dy"]
        left = (width - size) // 2 + level["dx"]
        return max(top, 0), max(left, 0), min(top + size, height), min(left + size, width)

    def masks(self, shape, levels, ctx, like):
        out = torch.ones((len(levels), 1, *shape), dtype=like.dtype, device=like.device)
        for i, level in enumerate(levels):
            top, left, bottom, right = self.box(*shape, level)
            out[i, :, top:bottom, left:right] = 0
        return out

    def forward(self, x: torch.Tensor, level: Level, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if "mask" in state:
            return super().forward(x, level, state)
        mask = self.masks(tuple(x.shape[-2:]), [level], None, x)[0]  # type: ignore[arg-type]
        return super().forward(x, level, {"mask": mask})


# ------------------------------------------------------------------------------------------- text


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at `size` px (FreeType build); the bitmap default otherwise."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


TEXT_ALPHABET = string.ascii_lowercase + "      "  # words of random letters, spaces ~ 1 in 5


@lru_cache(maxsize=16)
def _glyph_cells(size: int) -> dict[str, np.ndarray]:
    """Per character, a cell (line height × rounded advance) with the glyph rendered once by Pillow.

    A line of text is then one `np.concatenate` of cells, about 20x faster than FreeType-rendering
    every line; the shapes are Pillow's, the spacing rounded to whole pixels (no kerning).
    """
    font = _font(size)
    ascent, descent = font.getmetrics()
    height = ascent + descent
    cells = {}
    for char in set(TEXT_ALPHABET):
        advance = max(1, int(round(font.getlength(char))))
        canvas = Image.new("L", (advance, height), 0)
        ImageDraw.Draw(canvas).text((0, 0), char, fill=255, font=font)
        cells[char] = np.asarray(canvas)
    return cells


def _paste(canvas: np.ndarray, bitmap: np.ndarray, x: int, y: int) -> None:
    """canvas = max(canvas, bitmap placed at (x, y)), clipped to the canvas."""
    h, w = canvas.shape
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + bitmap.shape[0], h), min(x + bitmap.shape[1], w)
    if bottom > top and right > left:
        region = canvas[top:bottom, left:right]
        np.maximum(region, bitmap[top - y : bottom - y, left - x : right - x], out=region)


def text_mask(rng: np.random.Generator, height: int, width: int, font_size: int, lines: int) -> np.ndarray:
    """1 where a pixel is free of text: `lines` rows of random lowercase words at random positions."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    cells = _glyph_cells(font_size)
    letters = np.array(list(TEXT_ALPHABET))
    chars = max(4, int(math.ceil(2 * width / (0.45 * font_size))))
    for _ in range(lines):
        x = int(rng.integers(-width // 2, max(1, width // 2)))
        y = int(rng.integers(-font_size // 2, max(1, height - font_size // 2)))
        text = "".join(rng.choice(letters, size=chars)).strip() or "text"
        _paste(canvas, np.concatenate([cells[char] for char in text], axis=1), x, y)
    return _observed(canvas)


@register
class TextOverlay(_MaskOperator):
    """Random text overlaid on the image (RED-Net's text-removal task, font sizes 10 and 20)."""

    name = "inpaint"
    kind = "text"
    primary = "font"
    summary = "text overlay"
    source = "RED-Net: font size 10 or 20 on LIVE1 (text generator ours)"
    params = (
        Param("font", "int", "font size in pixels", default="10|20", low=4, high=200),
        Param("lines", "int", "number of text lines (0 = one per two font heights)", default="0", low=0, high=1000),
        fill_param("white"),
    )

    def masks(self, shape, levels, ctx, like):
        height, width = shape
        out = []
        for level in levels:
            lines = level["lines"] or max(1, height // (2 * level["font"]))
            out.append(text_mask(ctx.host, height, width, level["font"], lines))
        return _from_numpy_masks(out, like)


# -------------------------------------------------------------------------------------- scratches


def scratch_mask(rng: np.random.Generator, height: int, width: int, count: int, thickness: int) -> np.ndarray:
    """1 where no scratch passes: `count` random quadratic Bézier curves of `thickness` px."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    t = np.linspace(0, 1, 24)[:, None]
    for _ in range(count):
        p0, p1, p2 = rng.uniform([0, 0], [width, height], size=(3, 2))
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        draw.line(curve.ravel().tolist(), fill=255, width=int(thickness), joint="curve")
    return _observed(np.asarray(canvas))


@register
class Scratches(_MaskOperator):
    """Random curved scratches (RED-Net's scratch-removal task; the generator is ours)."""

    name = "inpaint"
    kind = "scratch"
    primary = "count"
    summary = "random scratches"
    source = "RED-Net scratch removal (generator not stated; ours: Bézier curves)"
    params = (
        Param("count", "int", "number of scratches", default="1..5", low=0, high=1000),
        Param("width", "int", "scratch thickness in pixels", default="1..3", low=1, high=100),
        fill_param("white"),
    )

    def masks(self, shape, levels, ctx, like):
        return _from_numpy_masks([scratch_mask(ctx.host, *shape, lv["count"], lv["width"]) for lv in levels], like)


# -------------------------------------------------------------------------------------- free-form


def freeform_mask(rng: np.random.Generator, height: int, width: int, strokes: int, brush: int, length: int) -> np.ndarray:
    """1 where observed: DeepFill-v2-style brush strokes (random zig-zag polylines with round joints)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(strokes):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        stroke_width = int(rng.integers(max(1, brush // 2), brush + 1))
        for _ in range(int(rng.integers(2, 9))):
            angle = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(length / 2, length)
            nx = min(max(x + step * math.cos(angle), 0.0), width - 1.0)
            ny = min(max(y + step * math.sin(angle), 0.0), height - 1.0)
            draw.line([(x, y), (nx, ny)], fill=255, width=stroke_width)
            r = stroke_width / 2
            draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
            x, y = nx, ny
    return _observed(np.asarray(canvas))


@register
class FreeformMask(_MaskOperator):
    """Irregular free-form holes made of random brush strokes (DeepFill v2 style)."""

    name = "inpaint"
    kind = "freeform"
    primary = "strokes"
    summary = "irregular free-form mask"
    source = "free-form masks of Yu et al. (DeepFill v2); sizes ours"
    params = (
        Param("strokes", "int", "number of brush strokes", default="1..4", low=0, high=1000),
        Param("brush", "int", "largest brush width in pixels", default="5..15", low=1, high=1000),
        Param("length", "int", "largest segment length in pixels", default="10..30", low=1, high=100000),
        fill_param("zero"),
    )

    def masks(self, shape, levels, ctx, like):
        return _from_numpy_masks(
            [freeform_mask(ctx.host, *shape, lv["strokes"], lv["brush"], lv["length"]) for lv in levels], like
        )


set_default_kind("inpaint", "square")


# -------------------------------------------------------------------------------------- Bernoulli


@register
class BernoulliMask(_MaskOperator):
    """Pixel interpolation: each pixel (all channels together) is removed with probability `ratio`."""

    name = "bernoulli"
    primary = "ratio"
    summary = "Bernoulli pixel removal (interpolation)"
    source = "DL-Net / On-Demand: r∈[0, 75%], reference model r=75%"
    params = (
        Param("ratio", "float", "fraction of pixels removed (0.75 or 75%)", default="0..0.75", low=0, high=1, high_open=True),
        Param("exact", "bool", "remove exactly round(ratio·H·W) pixels instead of Bernoulli draws", default="false"),
        fill_param("zero"),
    )

    def masks(self, shape, levels, ctx, like):
        height, width = shape
        u = ctx.uniform((len(levels), 1, height, width), like=like)
        ratios = torch.tensor([lv["ratio"] for lv in levels], dtype=like.dtype, device=like.device).view(-1, 1, 1, 1)
        masks = (u >= ratios).to(like.dtype)
        for i, level in enumerate(levels):
            if level["exact"]:
                removed = round(level["ratio"] * height * width)
                order = torch.argsort(u[i].flatten())
                flat = torch.ones(height * width, dtype=like.dtype, device=like.device)
                flat[order[:removed]] = 0
                masks[i, 0] = flat.view(height, width)
        return masks
