"""`restorekit degrade`: write degraded versions of clean images, each with a JSON sidecar record.

The sidecar holds the `Degradation` record (spec, exact levels, seeds), so `Degradation.from_json(...)
.replay(clean)` regenerates the image bit-exactly, and any model can be evaluated on identical inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch

from restorekit import __version__, evaluation, ops, paths
from restorekit.atomic import write_json
from restorekit.cli.common import error_line, progress_bar
from restorekit.degrade import SHDD_POOL, Degradation, Pipeline, image_seed, parse_spec
from restorekit.degrade.seeding import SEED_MODES
from restorekit.errors import RestorekitError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "degrade",
        help="write degraded images (plus a JSON record each) from clean ones",
        description="Degrade every input image with SPEC and write OUTDIR/<name>.png plus OUTDIR/<name>.json. "
        "Example: restorekit degrade Set5 -o out/Set5_x4 --spec 'down:scale=4' --seed 0. "
        "All or nothing: if any image fails, nothing in OUTDIR changes. "
        "Spec grammar and operators: docs/degradations.md.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, or benchmark names (Set5, CBSD68, ...)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--spec", required=True, help="degradation spec, e.g. 'noise:sigma=25' or 'shdd:level=moderate'")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument(
        "--seed-mode",
        choices=SEED_MODES,
        default="name",
        help="name: per-image seed from --seed and the file name (default); fixed: every image uses --seed (KAIR)",
    )
    p.add_argument("--versions", type=int, default=1, help="degraded versions per image (SHDD uses 12): NAME_v.png")
    p.add_argument("--format", choices=("png", "npy"), default="png", help="png (8-bit) or npy (exact float32 CHW)")
    p.add_argument("--modcrop", type=int, default=1, metavar="N",
                   help="crop each clean image to a multiple of N first (SR benchmarks: N = scale)")
    p.add_argument("--crop-to", metavar="WxH",
                   help="top-left crop of each clean image first, as `restorekit eval --crop-to` (BSD100 SR: 480x320; "
                        "portrait images are cropped to HxW)")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders of input folders")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per written image (errors and notes still print)")
    p.set_defaults(run=run)


def collect_inputs(inputs: list[str], recursive: bool) -> list[tuple[Path, str]]:
    """(path, name) pairs; the name (relative to its folder) names the output and seeds the image."""
    from restorekit.io import is_image_file, list_images

    found: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_file():
            if not is_image_file(path):
                raise RestorekitError(f"{path}: not an image file (expected .png, .jpg, .bmp, .tif, .webp)")
            found.append((path, path.name))
            continue
        folder = path if path.is_dir() else paths.resolve_dataset(item)
        images = list_images(folder, recursive=recursive)
        if not images:
            raise RestorekitError(f"{folder}: no images found")
        found += [(image, image.relative_to(folder).as_posix()) for image in images]
    names = [name for _, name in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RestorekitError(f"two inputs share the output name {duplicates[0]!r}; degrade them into separate folders")
    return found


def output_stem(name: str, version: int, versions: int) -> str:
    stem = name.rsplit(".", 1)[0]
    return f"{stem}_{version}" if versions > 1 else stem


class Output(NamedTuple):
    """One degraded version of one input: where it goes and how it is seeded."""

    source: Path
    name: str
    version: int
    seed: int
    image: Path  # final paths, relative to the output folder
    sidecar: Path
    region_map: Path  # a spatially varying (SHDD) spec's per-pixel ground truth: index into SHDD_POOL, 8-bit PNG


def plan_outputs(inputs: list[tuple[Path, str]], args: argparse.Namespace) -> list[Output]:
    """Every output of the run, checked before anything is written: existing files need --overwrite."""
    outputs = []
    for path, name in inputs:
        for version in range(args.versions):
            seed_name = name if args.versions == 1 else f"{name}#{version}"
            seed = args.seed if args.seed_mode == "fixed" and args.versions == 1 else image_seed(args.seed, seed_name)
            stem = output_stem(name, version, args.versions)
            outputs.append(Output(path, name, version, seed, Path(f"{stem}.{args.format}"), Path(f"{stem}.json"),
                                  Path(f"{stem}_map.png")))
    if not args.overwrite:
        out_dir = Path(args.out)
        for output in outputs:
            for rel in (output.image, output.sidecar, output.region_map):
                if (out_dir / rel).exists():
                    raise RestorekitError(f"{out_dir / rel}: exists; pass --overwrite to replace it (nothing was written)")
    return outputs


def run(args: argparse.Namespace) -> int:
    """All or nothing: outputs are written to a staging folder inside OUTDIR and moved into place only
    when every image succeeded, so a bad file or an interrupt never leaves half a test set."""
    if args.versions < 1:
        raise RestorekitError("--versions must be at least 1")
    if args.modcrop < 1:
        raise RestorekitError("--modcrop must be at least 1")
    pipe = parse_spec(args.spec)
    crop = evaluation.parse_crop(args.crop_to)
    outputs = plan_outputs(collect_inputs(args.inputs, args.recursive), args)
    out_dir = Path(args.out)
    created = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".restorekit-degrade-"))
    except OSError as err:
        _remove_if_empty(created)
        raise RestorekitError(f"{out_dir}: cannot write the output folder ({err.strerror or err})") from err
    try:
        lossy, lines = _write_all(pipe, outputs, staging, args, crop)
        for output in outputs:
            for rel in (output.image, output.sidecar, output.region_map):
                if rel == output.region_map and not (staging / rel).exists():
                    continue  # only spatially varying specs have a map
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, out_dir / rel)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(created)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    if not args.quiet:
        print("\n".join(lines), file=sys.stderr)
    if lossy:
        print(
            "note: this spec yields values that are not on uint8 levels (e.g. unclipped float noise); the PNGs "
            "round and clip them. Use --format npy for the exact inputs, or regenerate them from the JSON records.",
            file=sys.stderr,
        )
    return 0


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders this run created (innermost first), each only if nothing else is in it."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _write_all(
    pipe: Pipeline, outputs: list[Output], staging: Path, args: argparse.Namespace, crop: tuple[int, int] | None
) -> tuple[bool, list[str]]:
    """Degrade and write every output under `staging` (a progress bar on a terminal). Returns whether
    some PNG had to round float values, and a line per output (its final path and exact levels)."""
    from restorekit.io import read_image

    results, clean, loaded = [], None, None
    with progress_bar() as progress:
        bar = progress.add_task("degrading", total=len(outputs))
        for output in outputs:
            progress.update(bar, description=output.name)
            try:  # a file that cannot be read, or a size the spec cannot take: name the file, once
                if output.source != loaded:  # the versions of one input are consecutive: read it once
                    clean = ops.modcrop(evaluation.crop_to(read_image(output.source)[0], crop), args.modcrop)
                    loaded = output.source
                degraded, record = pipe.apply_one(clean, output.seed)
            except RestorekitError as err:
                if str(output.source) in str(err):
                    raise
                raise RestorekitError(error_line(output.source, err)) from err
            results.append(_write_one(degraded, record, output, staging, args))
            progress.advance(bar)
    return any(lossy for lossy, _ in results), [line for _, line in results]


def _write_one(degraded: torch.Tensor, record: Degradation, output: Output, staging: Path, args: argparse.Namespace) -> tuple[bool, str]:
    """Write one degraded image and its sidecar under `staging`; (rounded float values?, report line)."""
    from restorekit.io import write_image

    image_path = staging / output.image
    image_path.parent.mkdir(parents=True, exist_ok=True)
    lossy = False
    if args.format == "npy":
        _save_npy(image_path, degraded)
    else:
        lossy = not _is_8bit(degraded)
        write_image(image_path, degraded, bit_depth=8)
    region_map = {}
    if record.regions is not None:  # SHDD: the per-pixel ground truth, pixel value = index into SHDD_POOL
        write_image(staging / output.region_map, record.region_map().to(torch.float32)[None] / 255, bit_depth=8)
        region_map = {"region_map": output.region_map.name, "region_types": list(SHDD_POOL)}
    write_json(staging / output.sidecar, {
        "source": str(output.source),
        "name": output.name,
        "version": output.version,
        "base_seed": args.seed,
        "seed_mode": args.seed_mode,
        "crop_to": args.crop_to,
        "modcrop": args.modcrop,
        "image_seed": output.seed,
        "output": output.image.name,
        "restorekit": __version__,
        "degradation": record.to_dict(),
        **region_map,
    })
    return lossy, f"{Path(args.out) / output.image}  {record.fixed_spec}"


def _is_8bit(image: torch.Tensor) -> bool:
    """True when every value is in [0, 1] and on a 1/255 level, i.e. a PNG stores it exactly."""
    scaled = image.detach().to(torch.float64) * 255
    return bool(((image >= 0) & (image <= 1)).all() and (scaled - scaled.round()).abs().max() < 1e-4)


def _save_npy(path: Path, image: torch.Tensor) -> None:
    """The exact float32 CHW array; written into the staging folder, so no temporary file of its own."""
    import numpy as np

    np.save(path, image.detach().to("cpu", torch.float32).numpy())
