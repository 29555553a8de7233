"""The Python API: `Restorer` (load once, restore many) and `restore` (one call), below the CLI and the server.

    restorer = Restorer("adafm_denoise_s15_s75", tile=512)
    clean = restorer.restore(chw_tensor, level=30)           # strength from the card's lambda(level)
    out = restorekit.restore("noisy.png", task="denoise", level=25)

A restore call is: choose the model (a name, or the zoo model for a task that covers the level/scale),
check it fits the request, turn level/strength into call conditions, then `infer` (tiles, ensemble,
Y-channel models on colour photos, mask blending). The Restorer holds no per-request state, so the web
server calls one Restorer from several threads at different strengths.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restorekit import infer, io
from restorekit.card import ModelCard
from restorekit.errors import ModelError, RestorekitError
from restorekit.models import Model, get_architecture, list_models
from restorekit.tasks import AUTO, GENERIC, check_task

BACKENDS = ("torch", "onnxruntime")


# ---------------------------------------------------------------------------------------------------
# Choosing a model
# ---------------------------------------------------------------------------------------------------


def is_blind(card: ModelCard) -> bool:
    """Whether a zoo model removes an unknown degradation: what `--task auto` (and the page's auto) offers."""
    if card.blind:
        return True
    try:
        return get_architecture(card.architecture).blind
    except ModelError:
        return False


def _multi_factor(card: ModelCard) -> bool:
    try:
        return len(get_architecture(card.architecture).info(card.arguments).factors) > 1
    except ModelError:
        return False


def auto_rank(card: ModelCard) -> int:
    """`--task auto`'s order among blind models (then by name). Measured by scripts/auto_routing.py on MEPSNet's
    SHDD test and MBN's rain / motion blur / haze / JPEG sets (docs/BENCHMARKS.md "--task auto"): a one-pass
    model trained on unknown mixtures (MEPSNet) leads R-MBN's every-path run by 1.7 dB on average and harms far
    less where its training did not reach; so: 0 such a model (card task `restore`, one path), 1 a multi-factor
    model run on every path (R-MBN; `--task derain` etc. run one of its paths), 2 a blind model of one task."""
    if _multi_factor(card):
        return 1
    return 0 if card.task == GENERIC else 2


def _serves_by_path(card: ModelCard, task: str) -> bool:
    """A multi-factor model (MBN, card task `restore`) serves each task it has a path for (derain -> rain)."""
    try:
        return _multi_factor(card) and task in get_architecture(card.architecture).tasks
    except ModelError:
        return False


def choose_zoo_model(task: str, level: float | None = None, scale: int | None = None) -> str:
    """The zoo model for `task` (first by name among those whose levels/scales fit; a model made for the task
    before a multi-factor model's path for it); errors list candidates."""
    from restorekit.zoo import weights_dirs, zoo_cards

    every = zoo_cards()
    installed = "; ".join(c.describe() for c in every) or \
        f"none installed in {', '.join(str(d) for d in weights_dirs())}"
    cards = [c for c in every if c.degradation is None]  # a one-degradation specialist runs only by name
    if task == AUTO:
        matching = [c for c in cards if is_blind(c)]
        if not matching:
            raise ModelError("--task auto needs a blind/multi-factor zoo model; "
                             f"installed: {installed}. Pick a --task or a --model instead")
        return sorted(matching, key=auto_rank)[0].name
    made = [c for c in cards if c.task == task]
    matching = made + [c for c in cards if c.task != task and _serves_by_path(c, task)]
    if not matching:
        builtin = " (or --model bicubic)" if task == "sr" else ""
        raise ModelError(f"no zoo model for task {task!r}; installed: {installed}. "
                         f"Pass --model NAME or a weights file{builtin}")
    # A multi-factor model's path takes no level: it stands in for an explicit --level only where no model is made
    # for the task (R-MBN's motion-blur path on Gaussian blur of width 3 scored 5.6 dB under the blurred input,
    # docs/BENCHMARKS.md, RED-Net deblurring), so a level beyond every such model's range is refused as for any task.
    pool = made if level is not None and made else matching
    fitting = [c for c in pool if c.covers(level) and not (scale and c.card_scales() and scale not in c.card_scales())]
    if not fitting:
        wanted = " and ".join(w for w in (f"level {level:g}" if level is not None else "",
                                         f"scale x{scale}" if scale is not None else "") if w)
        anyway = ". Pass --model NAME without --level to run one anyway" if level is not None else ""
        raise ModelError(f"no zoo model for {task!r} covers {wanted}; candidates: "
                         + "; ".join(c.describe() for c in matching) + anyway)
    return fitting[0].name


@dataclass
class ModelChoice:
    """What to load: a name or path, the builder arguments (built-ins only) and whether the zoo chose it."""

    name: str
    kwargs: dict = field(default_factory=dict)
    chosen_by_task: bool = False


def choose_model(model: str | None, task: str | None, level: float | None, scale: int | None) -> ModelChoice:
    """--model wins; else the zoo card for --task. Single-scale built-ins are built at the asked scale."""
    check_task(task)
    if model:
        takes_scale = model in list_models() and "scale" in inspect.signature(get_architecture(model).build).parameters
        return ModelChoice(model, {"scale": scale} if scale is not None and takes_scale else {})
    if task is None:
        raise RestorekitError("say what to do: --task TASK (denoise, sr, ..., auto) or --model NAME|PATH")
    return ModelChoice(choose_zoo_model(task, level, scale), {}, chosen_by_task=True)


def load_backend(choice: ModelChoice, backend: str = "torch") -> Model:
    """The chosen model on PyTorch, or as an ONNX graph on onnxruntime (same `Model` interface)."""
    from restorekit.zoo import load_model

    if backend not in BACKENDS:
        raise RestorekitError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if backend == "onnxruntime" or choice.name.lower().endswith(".onnx"):
        from restorekit import export

        if choice.name.lower().endswith(".onnx"):
            return export.load_onnx(choice.name)
        return export.onnx_runner(load_model(choice.name, **choice.kwargs))
    return load_model(choice.name, **choice.kwargs)


# ---------------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------------


def load_mask(source: str | Path | np.ndarray | torch.Tensor) -> torch.Tensor:
    """A 1xHxW mask in [0, 1] from a file, array or tensor: 1 (white) = take the model's output there."""
    if isinstance(source, (str, Path)):
        mask, _ = io.read_image(source)
    elif isinstance(source, np.ndarray):
        mask = io.to_tensor(source)
    else:
        mask = source.float()
    if mask.ndim == 2:
        mask = mask[None]
    return mask.mean(dim=0, keepdim=True).clamp(0, 1)


def apply_mask(restored: torch.Tensor, degraded: torch.Tensor, mask: torch.Tensor, what: str = "the image") -> torch.Tensor:
    """Keep the input where the mask is black; inpainting masks are white over the holes (LaMa's convention)."""
    if restored.shape[-2:] != degraded.shape[-2:]:
        raise RestorekitError("--mask cannot be used with a model that changes the image size")
    check_mask_size(mask, degraded, what)
    return mask * restored + (1 - mask) * degraded


def check_mask_size(mask: torch.Tensor, image: torch.Tensor, what: str = "the image") -> None:
    if mask.shape[-2:] != image.shape[-2:]:
        raise RestorekitError(f"mask is {mask.shape[-1]}x{mask.shape[-2]} but {what} is "
                              f"{image.shape[-1]}x{image.shape[-2]}")


# ---------------------------------------------------------------------------------------------------
# Restorer
# ---------------------------------------------------------------------------------------------------


class Restorer:
    """Load a model once, restore many images of any size.

    model: registry name, zoo name, weights path or a `Model`. precision: 'fp32' | 'fp16' | 'bf16'
    (only where the architecture's flag was measured; on the CPU bf16 is autocast over fp32 weights).
    tile: core tile size in input pixels (0 disables tiling); tile_overlap: blending width (None: 32, at
    most half the tile). Impossible values are refused here, before anything runs (`infer.check_tiling`);
    tiles small for the model's receptive field give a one-line warning with the estimated slowdown.
    ensemble: average the 8 flip/rotation variants (RED-Net's test-time trick; 8x slower).
    """

    def __init__(
        self,
        model: str | Model = "identity",
        device: str = "auto",
        precision: str = "fp32",
        tile: int = 512,
        tile_overlap: int | None = None,
        ensemble: bool = False,
        **model_kwargs: Any,
    ):
        from restorekit.zoo import load_model

        overlap = infer.check_tiling(tile, tile_overlap)
        self.model = load_model(model, **model_kwargs) if isinstance(model, str) else model.eval()
        self.device = infer.pick_device(device)
        self.precision = precision
        infer.place(self.model, self.device, precision)
        self.tile, self.tile_overlap, self.ensemble = tile, overlap, ensemble
        self.tiling_warning = infer.tiling_warning(tile, tile_overlap, self.info)
        if self.tiling_warning:
            warnings.warn(self.tiling_warning, stacklevel=2)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def info(self):
        return self.model.info

    @property
    def card(self) -> ModelCard | None:
        return self.model.card

    def strength_for(self, level: float | None, strength: float | None) -> float | None:
        return infer.resolve_strength(self.model, level, strength)

    def check(self, task: str | None = None, level: float | None = None, scale: int | None = None,
              degrade: str | None = None) -> None:
        check_task(task)
        infer.check_fit(self.model, task, level, scale)
        infer.record_spec(self.model, level, scale, degrade)

    def restore(
        self,
        image: torch.Tensor,
        *,
        task: str | None = None,
        level: float | None = None,
        strength: float | None = None,
        scale: int | None = None,
        mask: torch.Tensor | None = None,
        degrade: str | None = None,
        deadline: infer.Deadline | None = None,
    ) -> torch.Tensor:
        """Restore one CHW float image in [0, 1] (host memory); returns CHW float in [0, 1] on the CPU.

        task: what the caller expects the model to do ('denoise', 'sr', ...); a model made for another
        task, or a level outside the model's trained range, is refused (ModelError) instead of silently
        producing a wrong image. level: the degradation level (a modulated model's strength from its
        card's lambda(level); FFDNet's noise map); strength: the raw lambda in [0, 1], which wins over
        level. mask (1xHxW, white = restore): a model that takes a mask gets it, any other model's
        output is blended with the input through it. degrade: for a model that takes the degradation
        record (DL-Net), the spec its input went through (default: the task's canonical degradation at
        level and scale, e.g. for SR a blur of width LEVEL before the downscale); such a model runs on
        the whole image, its record made for the image's size. A multi-branch model (MBN) runs the path of
        the task's degradation (derain -> rain), or for task auto / None every path in turn (R-MBN).
        deadline: checked before every tile; past it the call stops with TimedOut (the web server's --timeout).
        """
        self.check(task, level, scale, degrade)
        spec = infer.record_spec(self.model, level, scale, degrade)
        takes_mask = "mask" in self.info.inputs
        if mask is not None:
            check_mask_size(mask, image)
        conditions = infer.conditions_for(self.model, level=level, strength=strength,
                                          scale=scale if "scale" in self.info.inputs else None,
                                          mask=mask if takes_mask else None, factor=infer.factor_for(self.model, task))
        scale_out = self.info.scale_for(conditions.get("scale"))

        def once(im: torch.Tensor) -> torch.Tensor:
            record = {} if spec is None else {"record": infer.record_of(spec, im, scale_out)}
            return infer.run_tiled(self.model, im, self.tile, self.tile_overlap, self.device,
                                   precision=self.precision, deadline=deadline, **conditions, **record)

        if self.ensemble and takes_mask and mask is not None:
            raise ModelError("--ensemble cannot be combined with a model that takes the mask")

        def restore_channels(im: torch.Tensor) -> torch.Tensor:
            return infer.run_ensemble(once, im) if self.ensemble else once(im)

        if self.info.in_channels == 1 and image.shape[-3] == 3:
            out = infer.restore_luma(restore_channels, image, scale_out)
        else:
            out = restore_channels(image)
        if mask is not None and not takes_mask:
            out = apply_mask(out, image, mask)
        return out.clamp(0, 1)


def build_restorer(
    choice: ModelChoice,
    *,
    task: str | None = None,
    level: float | None = None,
    scale: int | None = None,
    backend: str = "torch",
    device: str = "auto",
    precision: str = "fp32",
    tile: int = 512,
    tile_overlap: int | None = None,
    ensemble: bool = False,
    degrade: str | None = None,
) -> Restorer:
    """A ready `Restorer` for the choice, checked against task/level/scale (and the degradation spec a
    record-taking model is given); ONNX runs through onnxruntime."""
    infer.check_tiling(tile, tile_overlap)  # bad --tile values are refused before a model is loaded
    if backend == "onnxruntime" or choice.name.lower().endswith(".onnx"):
        if device not in ("auto", "cpu") or precision != "fp32":
            raise RestorekitError("the onnxruntime backend runs on the CPU in fp32 (drop --device/--precision)")
        device = "cpu"
    restorer = Restorer(load_backend(choice, backend), device=device, precision=precision, tile=tile,
                        tile_overlap=tile_overlap, ensemble=ensemble)
    restorer.check(task, level, scale, degrade)  # refused now, before any image is read
    return restorer


# ---------------------------------------------------------------------------------------------------
# restorekit.restore: one call
# ---------------------------------------------------------------------------------------------------

_RESTORERS: dict[tuple, Restorer] = {}


def _cached_restorer(key: tuple, make) -> Restorer:
    """Keep the last restorer so that repeated one-liner calls with the same settings load the model once."""
    if key not in _RESTORERS:
        _RESTORERS.clear()
        _RESTORERS[key] = make()
    return _RESTORERS[key]


def restore(
    image: str | Path | np.ndarray | torch.Tensor,
    output: str | Path | None = None,
    *,
    model: str | None = None,
    task: str | None = None,
    level: float | None = None,
    strength: float | None = None,
    scale: int | None = None,
    mask: Any = None,
    device: str = "auto",
    precision: str = "fp32",
    tile: int = 512,
    tile_overlap: int | None = None,
    ensemble: bool = False,
    backend: str = "torch",
    overwrite: bool = False,
    degrade: str | None = None,
):
    """Restore a path, an HxW[xC] array or a CHW tensor; the result has the input's type.

    A path gives an HxWxC uint8/uint16 array (the file's bit depth); an array gives the same dtype and
    layout back; a tensor gives a CHW float tensor. With `output`, the result is also written there
    (keeping format, bit depth, alpha and ICC profile of a path input). `degrade`: see `Restorer.restore`.
    """
    from restorekit.zoo import weights_dirs

    choice = choose_model(model, task, level, scale)
    key = (tuple(map(str, weights_dirs())), choice.name, tuple(sorted(choice.kwargs.items())), task, level, scale,
           backend, device, precision, tile, tile_overlap, ensemble)
    restorer = _cached_restorer(key, lambda: build_restorer(
        choice, task=task, level=level, scale=scale, backend=backend, device=device, precision=precision,
        tile=tile, tile_overlap=tile_overlap, ensemble=ensemble, degrade=degrade))
    meta = None
    if isinstance(image, (str, Path)):
        tensor, meta = io.read_image(image)
    elif isinstance(image, np.ndarray):
        tensor = io.to_tensor(image)
    elif isinstance(image, torch.Tensor):
        tensor = image.float()
    else:
        raise TypeError(f"expected a path, a numpy array or a CHW tensor, got {type(image).__name__}")
    out = restorer.restore(tensor, level=level, strength=strength, scale=scale,
                           mask=None if mask is None else load_mask(mask), degrade=degrade)
    if output is not None:
        io.write_image(output, out, meta, overwrite=overwrite)
    if isinstance(image, torch.Tensor):
        return out
    if isinstance(image, np.ndarray):
        return _like(out, image)
    return io.to_array(out, meta.bit_depth)


def _like(out: torch.Tensor, reference: np.ndarray) -> np.ndarray:
    """The result in the reference array's dtype and layout (HxW stays HxW)."""
    if reference.dtype in (np.uint8, np.uint16):
        array = io.to_array(out, 8 if reference.dtype == np.uint8 else 16)
    else:
        array = out.permute(1, 2, 0).numpy().astype(reference.dtype)
    return array[:, :, 0] if reference.ndim == 2 else array
