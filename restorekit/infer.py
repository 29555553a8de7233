"""Running a model on one image: device placement, channel adaptation, padding to size requirements.

Tiling, self-ensemble and half precision build on `run_model` (see the product issue); evaluation
uses it directly so that numbers and the product share one code path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import ModelError, RestorekitError


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_info(model: nn.Module):
    from restorekit.models import ModelInfo

    return getattr(model, "info", None) or ModelInfo(family="unknown", task="any")


# ---------------------------------------------------------------------------------------------------
# Which requests a model can serve (shared by Restorer, the CLI and the web page)
# ---------------------------------------------------------------------------------------------------

# What `task=` / `--task` accepts; `auto` means the zoo's blind / multi-factor model.
TASKS = ("denoise", "sr", "jpeg", "deblur", "inpaint", "interpolate", "derain", "dehaze", "auto")
GENERIC_TASKS = ("any", "restore")  # architectures that serve every task (identity, a bare adafm_net)


def check_task(task: str | None) -> None:
    """Unknown tasks are one clear line (argparse `choices` would print the usage block too)."""
    if task is not None and task not in TASKS:
        raise RestorekitError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")


def level_range(card: dict) -> tuple[float, float] | None:
    """The levels a zoo model was trained for: its card's `levels`, else its strength curve's span."""
    levels = card.get("levels")
    if isinstance(levels, (list, tuple)) and levels and all(isinstance(v, (int, float)) for v in levels):
        values = [float(v) for v in levels]  # a trainer's card lists spec strings instead: no numeric range
        return min(values), max(values)
    curve = card.get("strength_curve")
    if isinstance(curve, dict) and "start" in curve and "end" in curve:
        low, high = sorted((float(curve["start"]), float(curve["end"])))
        return low, high
    return None


def card_scales(card: dict) -> list[int]:
    """SR factors a card declares (`scales`, else the architecture's `scale` argument)."""
    if card.get("scales"):
        return [int(s) for s in card["scales"]]
    scale = card.get("arguments", {}).get("scale")
    return [int(scale)] if scale else []


def check_fit(model: torch.nn.Module, name: str, task: str | None, level: float | None, scale: int | None) -> None:
    """Refuse a model that cannot do what was asked: other task, other scale, level outside its range."""
    card = getattr(model, "card", None) or {}
    info = model_info(model)
    model_task = card.get("task") or info.task
    if task not in (None, "auto") and model_task not in (*GENERIC_TASKS, task):
        raise ModelError(f"model {name!r} is a {model_task!r} model, not {task!r}")
    if scale is not None and info.scale != scale:
        raise ModelError(f"model {name!r} upscales by x{info.scale}, not x{scale}")
    span = level_range(card)
    if level is not None and span is not None and not span[0] - 1e-9 <= level <= span[1] + 1e-9:
        raise ModelError(f"level {level:g} is outside the range {span[0]:g}..{span[1]:g} of model {name!r}")


def _adapt_channels(image: torch.Tensor, wanted: int | None) -> tuple[torch.Tensor, bool]:
    """Grey images through colour models are replicated to RGB (and averaged back); the reverse is an error."""
    have = image.shape[-3]
    if wanted is None or wanted == have:
        return image, False
    if have == 1 and wanted == 3:
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:]), True
    raise ModelError(f"the model takes {wanted}-channel images, this image has {have}")


@torch.no_grad()
def run_model(model: nn.Module, image: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Restore one CHW (or BCHW) float image in [0, 1]; returns the same layout on the CPU, unclamped."""
    info = model_info(model)
    device = torch.device(device) if isinstance(device, str) else device
    batch = image[None] if image.ndim == 3 else image
    batch, replicated = _adapt_channels(batch, info.in_channels)
    height, width = batch.shape[-2:]
    multiple = max(1, info.size_multiple)
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        batch = F.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    out = model(batch.to(device=device, dtype=dtype)).float().cpu()
    out = out[..., : height * info.scale, : width * info.scale]
    if replicated:
        out = out.mean(dim=-3, keepdim=True)
    return out[0] if image.ndim == 3 else out


# ---------------------------------------------------------------------------------------------------
# Tiling: the image stays in host memory; one tile (plus its context) visits the device at a time.
# ---------------------------------------------------------------------------------------------------


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
    model: nn.Module,
    image: torch.Tensor,
    tile: int,
    overlap: int = 32,
    device: torch.device | str = "cpu",
    context: int | None = None,
) -> torch.Tensor:
    """Restore a CHW image tile by tile; equals `run_model` on the whole image up to float rounding.

    The image is cut into a grid of cores of at most `tile` x `tile` input pixels; each core is widened
    by `overlap` / 2 towards its neighbours (the blending window) and run with `context` extra pixels on
    every side (default: the model's receptive field) that are discarded afterwards, so every kept pixel
    saw all the input it depends on. Overlapping windows are blended with linear feathering, which hides
    any residual (rounding) difference. Output is accumulated on the host.
    """
    info = model_info(model)
    context = info.receptive_field if context is None else context
    channels, height, width = image.shape
    if tile <= 0 or (height <= tile and width <= tile):
        return run_model(model, image, device)
    overlap = max(0, min(overlap, tile // 2))
    scale, multiple = info.scale, max(1, info.size_multiple)
    out = None
    weight_sum = torch.zeros(1, height * scale, width * scale)
    ys, xs = tile_spans(height, tile, overlap), tile_spans(width, tile, overlap)
    for iy, (y0, y1) in enumerate(ys):
        for ix, (x0, x1) in enumerate(xs):
            # Window starts aligned to the size multiple keep strided models on the same sampling grid.
            cy0, cx0 = (max(0, (v - context) // multiple * multiple) for v in (y0, x0))
            cy1, cx1 = min(height, y1 + context), min(width, x1 + context)
            restored = run_model(model, image[:, cy0:cy1, cx0:cx1], device)
            core = restored[:, (y0 - cy0) * scale:(y1 - cy0) * scale, (x0 - cx0) * scale:(x1 - cx0) * scale]
            if out is None:
                out = torch.zeros(core.shape[0], height * scale, width * scale)
            weights = (_axis_weights(ys, iy, scale)[:, None] * _axis_weights(xs, ix, scale)[None, :])[None]
            out[:, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += core * weights
            weight_sum[:, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += weights
    return out / weight_sum


def restore_luma(restore, image: torch.Tensor, scale: int = 1) -> torch.Tensor:
    """Run a Y-channel model on a colour image the way the field does (SRCNN, ARCNN, the JPEG benchmarks):
    restore MATLAB rgb2ycbcr's Y, keep Cb/Cr (bicubic-upscaled for SR), convert back to RGB."""
    from restorekit import ops

    ycbcr = ops.rgb2ycbcr(image.double())
    luma = restore(ycbcr[..., :1, :, :].float()).double()
    chroma = ycbcr[..., 1:, :, :]
    if scale > 1:
        chroma = ops.upscale(chroma, scale)
    return ops.ycbcr2rgb(torch.cat([luma, chroma], dim=-3)).float()


# ---------------------------------------------------------------------------------------------------
# Self-ensemble (RED-Net Sec. 3.5, the thesis's "+"): 8 flips/rotations, inverted and averaged.
# ---------------------------------------------------------------------------------------------------


def dihedral(image: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """The k-th of the 8 flip/rotation transforms of the last two axes (or its inverse)."""
    rotations, flip = k % 4, k >= 4
    if not inverse:
        image = torch.flip(image, (-1,)) if flip else image
        return torch.rot90(image, rotations, (-2, -1))
    image = torch.rot90(image, -rotations, (-2, -1))
    return torch.flip(image, (-1,)) if flip else image


def run_ensemble(restore, image: torch.Tensor) -> torch.Tensor:
    """Average `restore` over the 8 dihedral transforms of `image` (each result transformed back)."""
    total = None
    for k in range(8):
        result = dihedral(restore(dihedral(image, k)), k, inverse=True)
        total = result if total is None else total + result
    return total / 8


# ---------------------------------------------------------------------------------------------------
# The Python API: Restorer
# ---------------------------------------------------------------------------------------------------

def is_modulated(model: nn.Module) -> bool:
    """Whether the strength slider means anything: a `set_strength` method and at least one modulated layer
    (AdaFM-Net built with adafm=False, e.g. the basic model or the AdaBN baseline, has none)."""
    if not hasattr(model, "set_strength"):
        return False
    layers = getattr(model, "modulated_layers", None)
    return layers is None or bool(layers())


def resolve_strength(model: nn.Module, level: float | None, strength: float | None) -> float | None:
    """The modulation strength to use: an explicit strength wins; else the model card's lambda(level)
    curve; else 1 (the adapted end). None for models without strength control."""
    card = getattr(model, "card", None) or {}
    if not is_modulated(model):
        if strength is not None:
            raise ModelError("this model has no strength control")
        return None
    if strength is not None:
        if not 0.0 <= strength <= 1.0:
            raise ModelError(f"strength must be in [0, 1], got {strength}")
        return float(strength)
    if level is not None:
        if "strength_curve" not in card:
            raise ModelError("this model's card has no strength curve; pass a strength instead of a level")
        from restorekit.modulation import StrengthCurve

        return StrengthCurve.from_dict(card["strength_curve"])(level)
    return 1.0


PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Restorer:
    """Load a model once, restore many images of any size.

    model: registry name, zoo name or weights path. precision: 'fp32' | 'fp16' | 'bf16' (half
    precision only for models whose `supports_half` flag was verified; others refuse with a clear
    error). tile: core tile size in input pixels (0 disables tiling); tile_overlap: blending width.
    ensemble: average the 8 flip/rotation variants (RED-Net's test-time trick; 8x slower).
    """

    def __init__(
        self,
        model: str | nn.Module = "identity",
        device: str = "auto",
        precision: str = "fp32",
        tile: int = 512,
        tile_overlap: int = 32,
        ensemble: bool = False,
        **model_kwargs,
    ):
        from restorekit.zoo import load_model

        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        self.model = load_model(model, **model_kwargs) if isinstance(model, str) else model.eval()
        self.name = model if isinstance(model, str) else type(model).__name__
        self.info = model_info(self.model)
        if precision != "fp32" and not self.info.supports_half:
            raise ModelError(f"model {model!r} is not verified for {precision}; use precision='fp32'")
        self.device = pick_device(device)
        self.model.to(device=self.device, dtype=PRECISIONS[precision])
        self.tile, self.tile_overlap, self.ensemble = tile, tile_overlap, ensemble

    @property
    def card(self) -> dict:
        return getattr(self.model, "card", {}) or {}

    def strength_for(self, level: float | None, strength: float | None) -> float | None:
        return resolve_strength(self.model, level, strength)

    def restore(
        self,
        image: torch.Tensor,
        *,
        task: str | None = None,
        level: float | None = None,
        strength: float | None = None,
    ) -> torch.Tensor:
        """Restore one CHW float image in [0, 1] (host memory); returns CHW float in [0, 1] on the CPU.

        task: what the caller expects the model to do ('denoise', 'sr', ...); a model made for another
        task, or a level outside the model's trained range, is refused (ModelError) instead of silently
        producing a wrong image. level: the degradation level (sets a modulated model's strength from its
        card's lambda(level)); strength: the raw lambda in [0, 1], which wins over level.
        """
        check_task(task)
        check_fit(self.model, self.name, task, level, None)
        lam = self.strength_for(level, strength)
        if lam is not None:
            self.model.set_strength(lam)

        def once(im: torch.Tensor) -> torch.Tensor:
            return run_tiled(self.model, im, self.tile, self.tile_overlap, self.device)

        def restore_channels(im: torch.Tensor) -> torch.Tensor:
            return run_ensemble(once, im) if self.ensemble else once(im)

        if self.info.in_channels == 1 and image.shape[-3] == 3:
            return restore_luma(restore_channels, image, self.info.scale).clamp(0, 1)
        return restore_channels(image).clamp(0, 1)
