"""`restorekit degrade`: write degraded versions of clean images, each with a JSON sidecar record.

The sidecar holds the `Degradation` record (spec, exact levels, seeds), so `Degradation.from_json(...)
.replay(clean)` regenerates the image bit-exactly, and any model can be evaluated on identical inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from restorekit import __version__, ops, paths
from restorekit.cli.common import write_json
from restorekit.degrade import image_seed, parse_spec
from restorekit.errors import RestorekitError

SEED_MODES = ("name", "fixed")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "degrade",
        help="write degraded images (plus a JSON record each) from clean ones",
        description="Degrade every input image with SPEC and write OUTDIR/<name>.png plus OUTDIR/<name>.json. "
        "Example: restorekit degrade Set5 -o out/Set5_x4 --spec 'down:scale=4' --seed 0. "
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
    p.add_argument("--recursive", action="store_true", help="look into sub-folders of input folders")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=run)


def collect_inputs(inputs: list[str], recursive: bool) -> list[tuple[Path, str]]:
    """(path, name) pairs; the name (relative to its folder) names the output and seeds the image."""
    from restorekit.io import is_image_file, list_images  # noqa: PLC0415 - keep `restorekit --help` light

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


def run(args: argparse.Namespace) -> int:
    from restorekit.io import read_image, write_image  # noqa: PLC0415

    if args.versions < 1:
        raise RestorekitError("--versions must be at least 1")
    if args.modcrop < 1:
        raise RestorekitError("--modcrop must be at least 1")
    pipe = parse_spec(args.spec)
    inputs = collect_inputs(args.inputs, args.recursive)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    lossy_note = False
    for path, name in inputs:
        clean, _ = read_image(path)
        clean = ops.modcrop(clean, args.modcrop)
        for version in range(args.versions):
            seed_name = name if args.versions == 1 else f"{name}#{version}"
            seed = args.seed if args.seed_mode == "fixed" and args.versions == 1 else image_seed(args.seed, seed_name)
            degraded, record = pipe.apply_one(clean, seed)
            stem = output_stem(name, version, args.versions)
            image_path = out_dir / f"{stem}.{args.format}"
            sidecar = out_dir / f"{stem}.json"
            if not args.overwrite and (image_path.exists() or sidecar.exists()):
                raise RestorekitError(f"{image_path}: exists; pass --overwrite to replace it")
            image_path.parent.mkdir(parents=True, exist_ok=True)
            if args.format == "npy":
                _save_npy(image_path, degraded)
            else:
                lossy_note |= not _is_8bit(degraded)
                write_image(image_path, degraded, bit_depth=8, overwrite=args.overwrite)
            write_json(sidecar, {
                "source": str(path),
                "name": name,
                "version": version,
                "base_seed": args.seed,
                "seed_mode": args.seed_mode,
                "modcrop": args.modcrop,
                "image_seed": seed,
                "output": image_path.name,
                "restorekit": __version__,
                "degradation": record.to_dict(),
            })
            print(f"{image_path}  {record.fixed_spec}", file=sys.stderr)
    if lossy_note:
        print(
            "note: this spec yields values that are not on uint8 levels (e.g. unclipped float noise); the PNGs "
            "round and clip them. Use --format npy for the exact inputs, or regenerate them from the JSON records.",
            file=sys.stderr,
        )
    return 0


def _is_8bit(image: torch.Tensor) -> bool:
    """True when every value is in [0, 1] and on a 1/255 level, i.e. a PNG stores it exactly."""
    scaled = image.detach().to(torch.float64) * 255
    return bool(((image >= 0) & (image <= 1)).all() and (scaled - scaled.round()).abs().max() < 1e-4)


def _save_npy(path: Path, image: torch.Tensor) -> None:
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, image.detach().to("cpu", torch.float32).numpy())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
