"""`restorekit restore`: restore files and folders with a zoo model (or a built-in / weights file).

The first half of this module is the library behind the command, `restorekit.restore(...)` and the web
page: which model to use for a task, checking that a level or scale fits it, building a `Restorer`,
and masks. The second half is the command: jobs (input -> output paths), the per-file loop that keeps
going past a bad file, the progress bar and the JSON report.

Exit status: 0 all restored or skipped; 1 some inputs failed (each named on one line of stderr);
2 nothing was run (bad arguments: unknown model/task, level out of range, ...).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from restorekit.cli.common import console, error_line, progress_bar
from restorekit.errors import ModelError, RestorekitError
from restorekit.infer import TASKS, card_scales, check_fit, check_task, level_range

# `--task auto` picks a blind / multi-factor model (R-MBN, MEPSNet) from the zoo.
BLIND_FAMILIES = ("mbn", "mepsnet")
BACKENDS = ("torch", "onnxruntime")


# =====================================================================================================
# Library: choosing and preparing a model
# =====================================================================================================


def describe_card(card: dict) -> str:
    """'name (task, levels 15..75)': enough to choose between candidates in an error message."""
    parts = [str(card.get("task", "?"))]
    span = level_range(card)
    if span is not None:
        parts.append(f"levels {span[0]:g}..{span[1]:g}")
    if card_scales(card):
        parts.append("x" + "/x".join(str(s) for s in card_scales(card)))
    return f"{card.get('name', '?')} ({', '.join(parts)})"


def _is_blind(card: dict) -> bool:
    return card.get("family") in BLIND_FAMILIES or bool(card.get("blind"))


def _fits(card: dict, level: float | None, scale: int | None) -> bool:
    span = level_range(card)
    if level is not None and span is not None and not span[0] - 1e-9 <= level <= span[1] + 1e-9:
        return False
    return not (scale is not None and card_scales(card) and scale not in card_scales(card))


def choose_zoo_model(task: str, level: float | None = None, scale: int | None = None) -> str:
    """The zoo model for `task` (first by name among those whose levels/scales fit); errors list candidates."""
    from restorekit.zoo import weights_dir, zoo_cards

    cards = zoo_cards()
    installed = "; ".join(describe_card(c) for c in cards) or f"none installed in {weights_dir()}"
    if task == "auto":
        matching = [c for c in cards if _is_blind(c)]
        if not matching:
            raise ModelError("--task auto needs a blind/multi-factor zoo model (family mbn or mepsnet); "
                             f"installed: {installed}. Pick a --task or a --model instead")
        return matching[0]["name"]
    matching = [c for c in cards if c.get("task") == task]
    if not matching:
        builtin = " (or --model bicubic)" if task == "sr" else ""
        raise ModelError(f"no zoo model for task {task!r}; installed: {installed}. "
                         f"Pass --model NAME or a weights file{builtin}")
    fitting = [c for c in matching if _fits(c, level, scale)]
    if not fitting:
        wanted = " and ".join(w for w in (f"level {level:g}" if level is not None else "",
                                         f"scale x{scale}" if scale is not None else "") if w)
        raise ModelError(f"no zoo model for {task!r} covers {wanted}; candidates: "
                         + "; ".join(describe_card(c) for c in matching))
    return fitting[0]["name"]


def _builder_takes_scale(name: str) -> bool:
    """Built-in architectures with a `scale` argument are built at the asked SR factor."""
    import inspect

    from restorekit import models

    if name not in models.list_models():
        return False
    return "scale" in inspect.signature(models._BUILDERS[name]).parameters


@dataclass
class ModelChoice:
    """What to load: a name or path, the builder arguments (built-ins only) and whether the zoo chose it."""

    name: str
    kwargs: dict = field(default_factory=dict)
    chosen_by_task: bool = False


def choose_model(model: str | None, task: str | None, level: float | None, scale: int | None) -> ModelChoice:
    """--model wins; else the zoo card for --task. Built-in SR models are built at the asked scale."""
    check_task(task)
    if model:
        kwargs = {"scale": scale} if scale is not None and _builder_takes_scale(model) else {}
        return ModelChoice(model, kwargs)
    if task is None:
        raise RestorekitError("say what to do: --task TASK (denoise, sr, ..., auto) or --model NAME|PATH")
    return ModelChoice(choose_zoo_model(task, level, scale), {}, chosen_by_task=True)


def level_is_used(model: torch.nn.Module) -> bool:
    """True when --level means something for this model (a level range or a strength curve on its card)."""
    card = getattr(model, "card", None) or {}
    return level_range(card) is not None


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
    tile_overlap: int = 32,
    ensemble: bool = False,
):
    """A ready `Restorer` for the choice, checked against task/level/scale; ONNX runs through onnxruntime."""
    from restorekit.infer import Restorer
    from restorekit.zoo import load_model

    if backend not in BACKENDS:
        raise RestorekitError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    onnx_file = choice.name.lower().endswith(".onnx")
    if backend == "onnxruntime" or onnx_file:
        from restorekit import export

        if device not in ("auto", "cpu") or precision != "fp32":
            raise RestorekitError("the onnxruntime backend runs on the CPU in fp32 (drop --device/--precision)")
        model = export.load_onnx(choice.name) if onnx_file else export.onnx_runner(
            load_model(choice.name, **choice.kwargs), name=choice.name)
        device = "cpu"
    else:
        model = load_model(choice.name, **choice.kwargs)
    check_fit(model, choice.name, task, level, scale)
    return Restorer(model, device=device, precision=precision, tile=tile, tile_overlap=tile_overlap,
                    ensemble=ensemble)


# =====================================================================================================
# Library: masks and one image
# =====================================================================================================


def load_mask(source: str | Path | np.ndarray | torch.Tensor) -> torch.Tensor:
    """A 1xHxW mask in [0, 1] from a file, array or tensor: 1 (white) = take the model's output there."""
    from restorekit import io

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
    if mask.shape[-2:] != degraded.shape[-2:]:
        raise RestorekitError(f"mask is {mask.shape[-1]}x{mask.shape[-2]} but {what} is "
                              f"{degraded.shape[-1]}x{degraded.shape[-2]}")
    return mask * restored + (1 - mask) * degraded


def restore_tensor(restorer, image: torch.Tensor, *, level: float | None = None, strength: float | None = None,
                   mask: torch.Tensor | None = None, what: str = "the image") -> torch.Tensor:
    """One CHW image through the restorer, then the mask (checked before the model runs: fail fast)."""
    if mask is not None and mask.shape[-2:] != image.shape[-2:]:
        apply_mask(image, image, mask, what)  # raises the size-mismatch error
    out = restorer.restore(image, level=level, strength=strength)
    return out if mask is None else apply_mask(out, image, mask, what)


_RESTORERS: dict[tuple, object] = {}


def _cached_restorer(key: tuple, make):
    """Keep the last restorer so that repeated one-liner calls with the same settings load the model once."""
    if key not in _RESTORERS:
        _RESTORERS.clear()
        _RESTORERS[key] = make()
    return _RESTORERS[key]


def restore_api(
    image,
    output: str | Path | None = None,
    *,
    model: str | None = None,
    task: str | None = None,
    level: float | None = None,
    strength: float | None = None,
    scale: int | None = None,
    mask=None,
    device: str = "auto",
    precision: str = "fp32",
    tile: int = 512,
    tile_overlap: int = 32,
    ensemble: bool = False,
    backend: str = "torch",
    overwrite: bool = False,
):
    """`restorekit.restore`: restore a path, an HxW[xC] array or a CHW tensor; the result has the input's type.

    A path gives an HxWxC uint8/uint16 array (the file's bit depth); an array gives the same dtype and
    layout back; a tensor gives a CHW float tensor. With `output`, the result is also written there
    (keeping format, bit depth, alpha and ICC profile of a path input).
    """
    from restorekit import io
    from restorekit.zoo import weights_dir

    choice = choose_model(model, task, level, scale)
    key = (str(weights_dir()), choice.name, tuple(sorted(choice.kwargs.items())), task, level, scale, backend, device, precision,
           tile, tile_overlap, ensemble)
    restorer = _cached_restorer(key, lambda: build_restorer(
        choice, task=task, level=level, scale=scale, backend=backend, device=device, precision=precision,
        tile=tile, tile_overlap=tile_overlap, ensemble=ensemble))
    meta = None
    if isinstance(image, (str, Path)):
        tensor, meta = io.read_image(image)
    elif isinstance(image, np.ndarray):
        tensor = io.to_tensor(image)
    elif isinstance(image, torch.Tensor):
        tensor = image.float()
    else:
        raise TypeError(f"expected a path, a numpy array or a CHW tensor, got {type(image).__name__}")
    out = restore_tensor(restorer, tensor, level=level, strength=strength,
                         mask=None if mask is None else load_mask(mask))
    if output is not None:
        io.write_image(output, out, meta, overwrite=overwrite)
    if isinstance(image, torch.Tensor):
        return out
    if isinstance(image, np.ndarray):
        return _like(out, image)
    return io.quantize(out, meta.bit_depth)


def _like(out: torch.Tensor, reference: np.ndarray) -> np.ndarray:
    """The result in the reference array's dtype and layout (HxW stays HxW)."""
    from restorekit import io

    if reference.dtype in (np.uint8, np.uint16):
        array = io.quantize(out, 8 if reference.dtype == np.uint8 else 16)
    else:
        array = out.permute(1, 2, 0).numpy().astype(reference.dtype)
    return array[:, :, 0] if reference.ndim == 2 else array


# =====================================================================================================
# The command
# =====================================================================================================


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "restore",
        help="restore image files or folders (recursive) with a zoo model",
        description="Restore images. Folders are processed recursively; outputs keep their relative names, "
        "format and bit depth. Existing outputs are skipped unless --overwrite. A file that fails is named "
        "on stderr and the rest continue; exit status 1 then (2: nothing was run).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder (or a file name when there is a single input file)")
    p.add_argument("--task", help=f"one of {', '.join(TASKS)}; picks the zoo model when --model is absent")
    p.add_argument("--model", help="zoo name, built-in (bicubic, identity, ...), weights file or .onnx file")
    p.add_argument("--level", type=float, help="degradation level (noise sigma, JPEG quality, ...): sets a "
                   "modulated model's strength from its lambda(level) curve; checked against its range")
    p.add_argument("--strength", type=float, help="modulation strength lambda in [0, 1] (AdaFM); overrides --level")
    p.add_argument("--scale", type=int, help="SR factor")
    p.add_argument("--mask", help="mask image (or folder of masks with the inputs' relative names): white pixels "
                   "take the model's output, black keep the input; for inpainting, white = the holes")
    p.add_argument("--tile", type=int, default=512, help="tile size in input pixels, 0 = whole image (default 512)")
    p.add_argument("--tile-overlap", type=int, default=32, help="blending width between tiles (default 32)")
    p.add_argument("--ensemble", action="store_true", help="average the 8 flips/rotations (x8 slower)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="fp16/bf16 only for models whose supports_half flag was verified")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", default="torch", choices=BACKENDS, help="onnxruntime: CPU inference via ONNX")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", metavar="REPORT", help="write a per-file report (status, time, sizes, settings)")
    p.set_defaults(run=run)


@dataclass
class Job:
    """One input file and where its result goes (`rel`: its name relative to the input folder)."""

    source: Path
    dest: Path
    rel: str
    status: str = "pending"  # restored | skipped | failed
    error: str | None = None
    seconds: float = 0.0
    size_in: tuple[int, int] | None = None
    size_out: tuple[int, int] | None = None


def _output_suffix(path: Path) -> str:
    from restorekit.io import IMAGE_SUFFIXES

    return path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else ".png"


def plan_jobs(inputs: list[str], output: str) -> list[Job]:
    """Map inputs to outputs: folder/a/b.png -> OUT/a/b.png, file.png -> OUT/file.png (or OUT if a file name)."""
    from restorekit.io import is_image_file, list_images

    out = Path(output)
    single_file = len(inputs) == 1 and not Path(inputs[0]).is_dir() and is_image_file(out)
    jobs: list[Job] = []
    for raw in inputs:
        source = Path(raw)
        if source.is_dir():
            found = list_images(source, recursive=True)
            if not found:
                raise RestorekitError(f"{source}: no images found (looked recursively for "
                                      ".png .jpg .jpeg .bmp .tif .tiff .webp)")
            for path in found:
                rel = path.relative_to(source).as_posix()
                jobs.append(Job(path, (out / rel).with_suffix(_output_suffix(path)), rel))
        elif single_file:
            jobs.append(Job(source, out, source.name))
        else:
            jobs.append(Job(source, out / (source.stem + _output_suffix(source)), source.name))
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.dest.resolve() == job.source.resolve():
            raise RestorekitError(f"{job.source}: the output would replace the input; choose another -o folder")
        if job.dest in seen:
            raise RestorekitError(f"{seen[job.dest]} and {job.source} would both be written to {job.dest}")
        seen[job.dest] = job.source
    return jobs


def _mask_for(job: Job, mask_arg: str | None, shared: torch.Tensor | None) -> torch.Tensor | None:
    """The shared mask, or the mask with the job's relative name in a mask folder."""
    if mask_arg is None:
        return None
    if shared is not None:
        return shared
    folder = Path(mask_arg)
    for candidate in (folder / job.rel, (folder / job.rel).with_suffix(".png")):
        if candidate.is_file():
            return load_mask(candidate)
    raise RestorekitError(f"{job.source}: no mask {folder / job.rel} in the mask folder")


def process(job: Job, restorer, args: argparse.Namespace, shared_mask: torch.Tensor | None) -> None:
    """Read, restore, write one file (atomically, so a failure never leaves a partial output)."""
    from restorekit import io

    if job.dest.exists() and not args.overwrite:
        job.status = "skipped"
        return
    start = time.perf_counter()
    image, meta = io.read_image(job.source)
    mask = _mask_for(job, args.mask, shared_mask)
    out = restore_tensor(restorer, image, level=args.level, strength=args.strength, mask=mask, what=str(job.source))
    io.write_image(job.dest, out, meta, overwrite=args.overwrite)
    job.size_in, job.size_out = tuple(image.shape[-2:]), tuple(out.shape[-2:])
    job.status, job.seconds = "restored", time.perf_counter() - start


def run_jobs(jobs: list[Job], restorer, args: argparse.Namespace, shared_mask: torch.Tensor | None) -> None:
    """Every job, with a progress bar on a terminal (silent otherwise); failures are reported and skipped."""
    with progress_bar() as progress:
        bar = progress.add_task("restoring", total=len(jobs))
        for job in jobs:
            progress.update(bar, description=job.rel)
            try:
                process(job, restorer, args, shared_mask)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
                job.status, job.error = "failed", error_line(job.source, err)
                console.print(f"restorekit: error: {job.error}", markup=False, highlight=False, soft_wrap=True)
            progress.advance(bar)


def report(jobs: list[Job], restorer, args: argparse.Namespace, model_name: str, lam: float | None) -> dict:
    """The --json payload: settings that change the pixels, then one entry per file."""
    counts = {s: sum(j.status == s for j in jobs) for s in ("restored", "skipped", "failed")}
    return {
        "model": model_name,
        "card": restorer.card.get("name"),
        "task": args.task, "level": args.level, "strength": lam, "scale": restorer.info.scale,
        "settings": {"tile": args.tile, "tile_overlap": args.tile_overlap, "ensemble": args.ensemble,
                     "precision": args.precision, "device": str(restorer.device), "backend": args.backend,
                     "mask": args.mask},
        "summary": counts,
        "files": [{"input": str(j.source), "output": str(j.dest), "status": j.status, "error": j.error,
                   "seconds": round(j.seconds, 3), "size_in": j.size_in, "size_out": j.size_out} for j in jobs],
    }


def run(args: argparse.Namespace) -> int:
    from restorekit.cli.common import write_json

    check_task(args.task)
    jobs = plan_jobs(args.inputs, args.output)
    choice = choose_model(args.model, args.task, args.level, args.scale)
    restorer = build_restorer(choice, task=args.task, level=args.level, scale=args.scale, backend=args.backend,
                              device=args.device, precision=args.precision, tile=args.tile,
                              tile_overlap=args.tile_overlap, ensemble=args.ensemble)
    lam = restorer.strength_for(args.level, args.strength)  # level -> lambda errors surface before any file
    notes = []
    if choice.chosen_by_task:
        notes.append(f"using zoo model {choice.name!r}")
    if args.level is not None and lam is None and not level_is_used(restorer.model):
        notes.append(f"model {choice.name!r} has no level range; --level is ignored")
    if args.mask and restorer.info.scale != 1:
        raise RestorekitError("--mask cannot be used with a model that changes the image size")
    shared_mask = load_mask(args.mask) if args.mask and not Path(args.mask).is_dir() else None
    for note in notes:
        print(f"restorekit: {note}", file=sys.stderr)
    run_jobs(jobs, restorer, args, shared_mask)
    if args.json:
        write_json(args.json, report(jobs, restorer, args, choice.name, lam))
    counts = {s: sum(j.status == s for j in jobs) for s in ("restored", "skipped", "failed")}
    skipped = f", {counts['skipped']} skipped (exist; --overwrite replaces them)" if counts["skipped"] else ""
    if len(jobs) > 1 or counts["skipped"]:  # a lone failed file already has its one line
            print(f"restorekit: {counts['restored']} restored{skipped}, {counts['failed']} failed -> {args.output}",
              file=sys.stderr)
    return 1 if counts["failed"] else 0
