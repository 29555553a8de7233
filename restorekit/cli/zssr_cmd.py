"""`restorekit zssr LR_IMAGE --scale 4 -o OUT.png`: ZSSR, the per-image baseline of SimUSR (restorekit.train.zssr)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "zssr", help="super-resolve one LR image with a network trained on that image alone (ZSSR)",
        description="ZSSR (Shocher et al. 2018; thesis ch. 5's baseline): train an 8-layer, 64-channel residual "
        "network (0.23M parameters) on (son -> father) pairs cut from LR_IMAGE itself (son: MATLAB-bicubic "
        "downscale of a random father crop), then super-resolve LR_IMAGE with it. Seeded. L1, Adam 1e-3 "
        "halved at 50%% and 75%% of the steps; flips/rotations only. About 0.1-0.3 s per step on one CPU core; "
        "see docs/training.md (SimUSR and ZSSR). Nothing is written unless the whole run succeeds.")
    p.add_argument("image", metavar="LR_IMAGE", help="the low-resolution image")
    p.add_argument("--scale", type=int, required=True, help="SR factor (integer >= 2)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output image (.png, .tif, ...)")
    p.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, crops and flips (default 0)")
    p.add_argument("--crop", type=int, default=64, help="father crop side in LR pixels, clipped to the image (default 64)")
    p.add_argument("--batch", type=int, default=4, help="father crops per step (default 4)")
    p.add_argument("--no-ensemble", action="store_true", help="one forward pass instead of the mean over 8 flips/rotations")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--json", metavar="FILE", help="write the run's stats (runtime, steps, final loss, ...) here")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=run)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse before any training: an output that exists (without --overwrite) or an unknown image suffix."""
    from restorekit.errors import RestorekitError
    from restorekit.io import is_image_file

    if not is_image_file(args.output):
        raise RestorekitError(f"{args.output}: not an image file name (expected .png, .jpg, .bmp, .tif, .webp)")
    for path in (args.output, args.json):
        if path and Path(path).exists() and not args.overwrite:
            raise RestorekitError(f"{path}: exists; pass --overwrite to replace it")


def run(args: argparse.Namespace) -> int:
    import torch

    from restorekit.atomic import write_json
    from restorekit.errors import RestorekitError
    from restorekit.infer import pick_device
    from restorekit.io import read_image, write_image
    from restorekit.train.zssr import zssr

    _check_outputs(args)
    device = pick_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RestorekitError(f"--device {args.device}: no CUDA device here")
    lr, _ = read_image(args.image)
    sr, stats = zssr(lr, args.scale, steps=args.steps, seed=args.seed, crop=args.crop, batch=args.batch,
                     ensemble=not args.no_ensemble, device=device)
    write_image(args.output, sr, bit_depth=8, overwrite=args.overwrite)
    if args.json:
        write_json(args.json, {"image": str(args.image), "output": str(args.output), **stats.to_json()})
    print(f"wrote {args.output} ({sr.shape[-1]}x{sr.shape[-2]}, {stats.steps} steps, {stats.seconds:.1f} s)",
          file=sys.stderr)
    return 0
