"""The engine under every restore: device, precision, channel adaptation, padding, tiling, self-ensemble.

Everything here takes a `restorekit.models.Model` and passes conditions (strength, level, level map,
mask, scale, degradation record) through to its call; nothing is stored on the module, so one loaded
model serves concurrent requests at different strengths. `restorekit.api.Restorer` builds on these
functions; `evaluation` uses `run_model` directly so that numbers and the product share one code path.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from restorekit import ops
from restorekit.data.augment import dihedral, inverse_dihedral
from restorekit.degrade import Degradation, canonical_spec, parse_spec
from restorekit.errors import ModelError, RestorekitError, SpecError, TimedOut
from restorekit.models import Model, ModelInfo
from restorekit.tasks import ANALYZE, serves

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """'auto': a GPU when there is one, else the CPU; a GPU without an index is the local rank's (torchrun)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device {device!r} (auto, cpu, cuda, cuda:1, ...)") from None
    return torch.device("cuda", local_rank) if resolved.type == "cuda" and resolved.index is None else resolved


def check_precision(model: Model, precision: str) -> None:
    """Only precisions whose flag the contract tests measured for this architecture (spandrel PR #73)."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if not model.info.supports(precision):
        raise ModelError(f"model {model.name!r} is not verified for {precision}; use precision='fp32'")


def place(model: Model, device: torch.device, precision: str) -> Model:
    """Move the weights. On the CPU bf16 runs as autocast over fp32 weights (`precision_context`), so
    the weights stay fp32 there; elsewhere half precision casts the weights."""
    check_precision(model, precision)
    dtype = torch.float32 if device.type == "cpu" and precision == "bf16" else PRECISIONS[precision]
    return model.to(device=device, dtype=dtype)


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str) -> Iterator[None]:
    """CPU bf16: autocast (convolutions in bf16, fp32 weights, fp32 where autocast keeps it, e.g. the
    residual additions of fp32 inputs). Anything else runs in the weights' own dtype."""
    if device.type == "cpu" and precision == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield
    else:
        yield


# ---------------------------------------------------------------------------------------------------
# Which requests a model can serve (shared by Restorer, the CLI and the web page)
# ---------------------------------------------------------------------------------------------------


def model_tasks(model: Model) -> tuple[str, ...]:
    """The card's task when the model has one (a trained adafm_net is a denoiser), else the descriptor's."""
    return (model.card.task,) if model.card is not None else model.info.tasks


def check_fit(model: Model, task: str | None, level: float | None, scale: int | None) -> None:
    """Refuse a model that cannot do what was asked: other task, other scale, level outside its range."""
    tasks = model_tasks(model)
    if ANALYZE in tasks and task != ANALYZE:
        raise ModelError(f"model {model.name!r} recognises distortions and restores nothing: "
                         f"run `restorekit analyze IMAGE --model {model.name}`")
    if not serves(tasks, task):
        raise ModelError(f"model {model.name!r} is a {'/'.join(tasks)!r} model, not {task!r}")
    if scale is not None:
        model.info.scale_for(scale)
    if model.card is not None and not model.card.covers(level):
        span = model.card.level_range()
        raise ModelError(f"level {level:g} is outside the range {span[0]:g}..{span[1]:g} of model {model.name!r}")


def resolve_strength(model: Model, level: float | None, strength: float | None) -> float | None:
    """The modulation strength to use: an explicit strength wins; else the model card's lambda(level)
    curve; else 1 (the adapted end). None for models without strength control."""
    if not model.info.modulated:
        if strength is not None:
            raise ModelError(f"model {model.name!r} has no strength control")
        return None
    if strength is not None:
        if not 0.0 <= strength <= 1.0:
            raise ModelError(f"strength must be in [0, 1], got {strength}")
        return float(strength)
    if level is not None:
        curve = model.card.strength_curve if model.card is not None else None
        if not curve:
            raise ModelError("this model's card has no strength curve; pass a strength instead of a level")
        from restorekit.modulation import StrengthCurve

        return StrengthCurve.from_dict(curve)(level)
    return 1.0


def slider_level_scale(info: ModelInfo, level: float | None, scale: float | None) -> tuple[float | None, float | None]:
    """(level, scale) of a request. For a continuous-scale model (AdaFM's SR slider) the level IS the scale:
    either one given sets the other. Any other model keeps them apart."""
    if info.scale_range is None:
        return level, scale
    return (scale if level is None else level), (level if scale is None else scale)


def request_scale(info: ModelInfo, level: float | None, scale: float | None) -> float:
    """The output scale of a request: `scale` for a model that takes one, its single head's otherwise."""
    _, scale = slider_level_scale(info, level, scale)
    return info.scale_for(scale if "scale" in info.inputs else None)


def factor_for(model: Model, task: str | None = None, factor: str | None = None) -> str | None:
    """The path a factor-conditioned model (MBN) runs: `factor` as given, else the task's (derain -> rain, ...);
    None, also for `factor="auto"` or an unknown task (auto, restore), runs every path (R-MBN). A factor for a
    model without paths is refused, as is one the model has no path for."""
    from restorekit.tasks import TASKS

    if "factor" not in model.info.inputs:
        if factor not in (None, "auto"):
            raise ModelError(f"model {model.name!r} takes no factor (it has no per-factor paths)")
        return None
    factor = factor or (TASKS[task].factor if task in TASKS else None)
    if factor in (None, "auto"):
        return None
    if factor not in model.info.factors:
        raise ModelError(f"model {model.name!r} has paths for {', '.join(model.info.factors)}, not {factor!r}; "
                         "'auto' runs them all")
    return factor


def conditions_for(model: Model, *, level: float | None = None, strength: float | None = None,
                   **others: Any) -> dict[str, Any]:
    """The call conditions a request means for this model: strength from level for a modulated model,
    the level itself for a model that takes it (FFDNet's noise map) and, for a model with a continuous scale
    range, the scale unless one is given; others passed as given."""
    conditions = {k: v for k, v in others.items() if v is not None}
    level, scale = slider_level_scale(model.info, level, others.get("scale"))
    if scale is not None:
        conditions["scale"] = scale
    lam = resolve_strength(model, level, strength)
    if lam is not None:
        conditions["strength"] = lam
    if level is not None and "level" in model.info.inputs:
        conditions["level"] = level
    return conditions


def record_spec(model: Model, level: float | None = None, scale: int | None = None,
                degrade: str | None = None) -> str | None:
    """The degradation a record-taking model (DL-Net) is told its input went through: `degrade` as given,
    else its task's canonical degradation at the level and scale (`degrade.canonical_spec`: for SR, a
    Gaussian blur of width LEVEL before the bicubic downscale). None for any other model, which refuses a
    `degrade` it could not use. The spec is checked here, on a blank image, before any image is read."""
    if "record" not in model.info.inputs:
        if degrade is not None:
            raise ModelError(f"model {model.name!r} takes no degradation record (--degrade is for models that "
                             "do, e.g. DL-Net)")
        return None
    scale = model.info.scale_for(scale)
    side = 24  # divisible by every usual factor, so a spec of another scale shows as a wrong size
    try:
        spec = degrade or canonical_spec(model_tasks(model)[0], level, scale)
        record = parse_spec(spec).record_for((1, side * scale, side * scale))
    except SpecError as err:
        raise ModelError(f"model {model.name!r} needs its input's degradation: {err}") from None
    if tuple(record.forward(torch.zeros(1, 1, side * scale, side * scale)).shape[-2:]) != (side, side):
        raise ModelError(f"{spec!r} does not shrink an image by the model's scale x{scale} "
                         f"(model {model.name!r})")
    return spec


def record_of(spec: str, image: torch.Tensor, scale: int) -> Degradation:
    """The `Degradation` record of `spec` for this degraded CHW image (its clean size = size x scale)."""
    channels, height, width = image.shape[-3:]
    return parse_spec(spec).record_for((channels, height * scale, width * scale))


# ---------------------------------------------------------------------------------------------------
# One image through the model
# ---------------------------------------------------------------------------------------------------


def _adapt_channels(image: torch.Tensor, wanted: int | None) -> tuple[torch.Tensor, bool]:
    """Grey images through colour models are replicated to RGB (and averaged back); the reverse is an error."""
    have = image.shape[-3]
    if wanted is None or wanted == have:
        return image, False
    if have == 1 and wanted == 3:
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:]), True
    raise ModelError(f"the model takes {wanted}-channel images, this image has {have}")


def _pad(tensor: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    return F.pad(tensor, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else tensor


@torch.no_grad()
def run_model(model: Model, image: torch.Tensor, device: torch.device | str = "cpu", precision: str = "fp32",
              **conditions: Any) -> torch.Tensor:
    """Restore one CHW (or BCHW) float image in [0, 1]; returns the same layout on the CPU, unclamped.

    Spatial conditions (mask, level map: (1|B, 1, H, W)) are padded with the image."""
    device = pick_device(device)
    info = model.info
    scale = info.scale_for(conditions.get("scale"))
    batch = image[None] if image.ndim == 3 else image
    batch, replicated = _adapt_channels(batch, info.in_channels)
    height, width = batch.shape[-2:]
    multiple = max(1, info.size_multiple)
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    dtype = model.dtype
    for key in ("mask", "level_map"):
        if isinstance(conditions.get(key), torch.Tensor):
            spatial = conditions[key]
            spatial = spatial.view(1, 1, *spatial.shape[-2:]) if spatial.ndim < 4 else spatial
            conditions[key] = _pad(spatial, pad_h, pad_w).to(device=device, dtype=dtype)
    batch = _pad(batch, pad_h, pad_w).to(device=device, dtype=dtype)
    if precision == "bf16" and device.type == "cpu":
        batch = batch.contiguous(memory_format=torch.channels_last)
    with precision_context(device, precision):
        out = model(batch, **conditions)
    out = out.float().cpu()[..., : ops.resized_length(height, scale), : ops.resized_length(width, scale)]
    if replicated:
        out = out.mean(dim=-3, keepdim=True)
    return out[0] if image.ndim == 3 else out


# ---------------------------------------------------------------------------------------------------
# Tiling: the image stays in host memory; one tile (plus its context) visits the device at a time.
# ---------------------------------------------------------------------------------------------------

# Tile settings, measured with the bundled AdaFM denoiser (39 px context) on a 512x512 photo, one thread,
# CPU seconds relative to one untiled pass (estimate = `tiling_cost`):
#   tile 512: 1.0x (est 1.5), 256: 1.2x (2.0), 128: 2.2x (3.5), 96: 3.1x (4.6), 64: 4.8x (7.4),
#   48: 7.4x (9.8), 32: 11.5x (15.5), 24: 16.1x (22.6), 16: 32.9x (40.6); issue 13 saw tile 7 take 32x.
# So the estimate tracks the cost (a little above it on small images, whose border tiles have less
# context), and below 16 pixels the per-tile overhead dominates for any model.
MIN_TILE = 16
DEFAULT_OVERLAP = 32  # when none is given: at most half the tile
SLOW_TILING = 3.0  # warn when the model runs on more than this many times the image's pixels
TILE_HELP = (f"tile size in input pixels, 0 = whole image (default 512). At least {MIN_TILE}; every tile is "
             "run with the model's receptive field as context on each side, so small tiles recompute pixels: "
             f"a one-line warning estimates the slowdown when it is over {SLOW_TILING:g}x")
OVERLAP_HELP = (f"blending width between tiles, smaller than the tile (default {DEFAULT_OVERLAP}); "
                "at most half the tile is used")


def check_tiling(tile: int, overlap: int | None = None) -> int:
    """Refuse tile settings the engine cannot honour (one rule for the CLI, the API and the server) and
    return the overlap `run_tiled` will blend over.

    0 disables tiling; a tile below MIN_TILE would run the model once per few pixels; an overlap of a
    whole tile leaves no tile pixels of its own. Blending reaches only the neighbouring tiles, so at most
    half a tile is used; None means DEFAULT_OVERLAP (so `--tile 32` alone is fine)."""
    if tile < 0 or 0 < tile < MIN_TILE:
        raise RestorekitError(f"tile {tile}: use 0 (whole image) or at least {MIN_TILE} pixels (--tile)")
    if overlap is None:
        return min(DEFAULT_OVERLAP, tile // 2)
    if overlap < 0:
        raise RestorekitError(f"tile overlap {overlap}: must be 0 or more (--tile-overlap)")
    if tile and overlap >= tile:
        raise RestorekitError(f"tile overlap {overlap} must be smaller than the tile {tile} (--tile-overlap)")
    return min(overlap, tile // 2)


def tiling_cost(tile: int, overlap: int, context: int) -> float:
    """Pixels the model runs on per image pixel for a large image: each tile keeps tile x tile pixels but
    runs on (tile + overlap + 2 * context) squared (blending window plus receptive field on both sides)."""
    return ((tile + overlap + 2 * context) / tile) ** 2


def tiling_warning(tile: int, overlap: int | None, info: ModelInfo) -> str | None:
    """One line estimating the slowdown when tiles are small for this model's receptive field, else None."""
    used = check_tiling(tile, overlap)
    if not tile or info.tiling == "whole":
        return None
    cost = tiling_cost(tile, used, info.receptive_field)
    if cost <= SLOW_TILING:
        return None
    later = DEFAULT_OVERLAP if overlap is None else overlap  # the overlap a larger tile would use
    fine = math.ceil((later + 2 * info.receptive_field) / (math.sqrt(SLOW_TILING) - 1) / 16) * 16
    return (f"tile {tile} with overlap {used} recomputes ~{cost:.1f}x the pixels of an untiled run on large "
            f"images ({info.receptive_field} px of context around every tile); --tile {fine} or more keeps it "
            f"under {SLOW_TILING:g}x")


@dataclass(frozen=True)
class Deadline:
    """A time limit that long work checks between steps (before each tile): CPU work running in a thread
    cannot be killed, so it has to stop itself, and whoever waits on it knows it really stopped."""

    seconds: float
    expires: float  # time.monotonic() value

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    def check(self) -> None:
        if time.monotonic() >= self.expires:
            raise TimedOut(self.seconds)



def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Blending windows along one axis: ceil(length / tile) equal cores, each widened by overlap / 2 on
    every side that has a neighbour (so neighbours share `overlap` pixels).

    The overlap never adds a row of tiles (a 4096 side at tile 512 is 8 windows for any overlap), which
    keeps the pixels the model runs on close to the image's own.
    """
    count = max(1, -(-length // tile))
    bounds = [round(i * length / count) for i in range(count + 1)]
    half = overlap // 2
    return [(max(0, bounds[i] - half) if i else 0, min(length, bounds[i + 1] + half) if i + 1 < count else length)
            for i in range(count)]


def _feather(length: int, before: int, after: int) -> torch.Tensor:
    """1-D blending weights: linear ramps over the overlaps with the previous/next tile, 1 elsewhere."""
    weights = torch.ones(length)
    if before:
        weights[:before] = torch.arange(1, before + 1, dtype=torch.float32) / (before + 1)
    if after:
        weights[length - after:] = torch.flip(torch.arange(1, after + 1, dtype=torch.float32), (0,)) / (after + 1)
    return weights


def _axis_weights(spans: list[tuple[int, int]], i: int, scale: int) -> torch.Tensor:
    """Feathering of window i over its overlaps with windows i-1 and i+1 (output pixels)."""
    start, end = spans[i]
    before = spans[i - 1][1] - start if i else 0
    after = end - spans[i + 1][0] if i + 1 < len(spans) else 0
    return _feather((end - start) * scale, max(before, 0) * scale, max(after, 0) * scale)


def run_tiled(
    model: Model,
    image: torch.Tensor,
    tile: int,
    overlap: int = 32,
    device: torch.device | str = "cpu",
    context: int | None = None,
    precision: str = "fp32",
    deadline: Deadline | None = None,
    **conditions: Any,
) -> torch.Tensor:
    """Restore a CHW image tile by tile; equals `run_model` on the whole image up to float rounding.

    The image is cut into a grid of cores of at most `tile` x `tile` input pixels; each core is widened
    by `overlap` / 2 towards its neighbours (the blending window) and run with `context` extra pixels on
    every side (default: the model's receptive field) that are discarded afterwards, so every kept pixel
    saw all the input it depends on. Overlapping windows are blended with linear feathering, which hides
    any residual (rounding) difference. Output is accumulated on the host. Spatial conditions (mask,
    level map) are cut with the image; a 'whole'-tiling model always sees the whole image. A `deadline`
    is checked before the first tile and between tiles (TimedOut).
    """
    info = model.info
    context = info.receptive_field if context is None else context
    channels, height, width = image.shape
    if deadline is not None:
        deadline.check()
    scale = info.scale_for(conditions.get("scale"))
    fractional = not float(scale).is_integer()  # tiles would not map onto whole output pixels
    if tile <= 0 or (height <= tile and width <= tile) or info.tiling == "whole" or fractional:
        return run_model(model, image, device, precision, **conditions)
    overlap = max(0, min(overlap, tile // 2))
    multiple = max(1, info.size_multiple)
    spatial = {k: v for k, v in conditions.items() if k in ("mask", "level_map") and isinstance(v, torch.Tensor)}
    out = None
    weight_sum = torch.zeros(1, height * scale, width * scale)
    ys, xs = tile_spans(height, tile, overlap), tile_spans(width, tile, overlap)
    for iy, (y0, y1) in enumerate(ys):
        for ix, (x0, x1) in enumerate(xs):
            if deadline is not None:
                deadline.check()
            # Window starts aligned to the size multiple keep strided models on the same sampling grid.
            cy0, cx0 = (max(0, (v - context) // multiple * multiple) for v in (y0, x0))
            cy1, cx1 = min(height, y1 + context), min(width, x1 + context)
            crops = {k: v[..., cy0:cy1, cx0:cx1] for k, v in spatial.items()}
            restored = run_model(model, image[:, cy0:cy1, cx0:cx1], device, precision, **{**conditions, **crops})
            core = restored[:, (y0 - cy0) * scale:(y1 - cy0) * scale, (x0 - cx0) * scale:(x1 - cx0) * scale]
            if out is None:
                out = torch.zeros(core.shape[0], height * scale, width * scale)
            weights = (_axis_weights(ys, iy, scale)[:, None] * _axis_weights(xs, ix, scale)[None, :])[None]
            out[:, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += core * weights
            weight_sum[:, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += weights
    return out / weight_sum


def restore_luma(restore: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """Run a Y-channel model on a colour image the way the field does (SRCNN, ARCNN, the JPEG benchmarks):
    restore MATLAB rgb2ycbcr's Y, keep Cb/Cr (bicubic-upscaled for SR), convert back to RGB."""
    ycbcr = ops.rgb2ycbcr(image.double())
    luma = restore(ycbcr[..., :1, :, :].float()).double()
    chroma = ycbcr[..., 1:, :, :]
    if scale > 1:
        chroma = ops.upscale(chroma, scale)
    return ops.ycbcr2rgb(torch.cat([luma, chroma], dim=-3)).float()


# ---------------------------------------------------------------------------------------------------
# Self-ensemble (RED-Net Sec. 3.5, the thesis's "+"): 8 flips/rotations, inverted and averaged.
# ---------------------------------------------------------------------------------------------------


def run_ensemble(restore: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """Average `restore` over the 8 dihedral transforms of `image` (each result transformed back)."""
    total = None
    for k in range(8):
        result = inverse_dihedral(restore(dihedral(image, k)), k)
        total = result if total is None else total + result
    return total / 8
