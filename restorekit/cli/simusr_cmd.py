"""`restorekit simusr prepare`: the optional pre-processing of SimUSR's LR-only training folder (BM3D).

Making LR images from HR ones is `restorekit degrade HR -o LR --spec down:scale=4 --modcrop 4`, not
repeated here; training is `restorekit train configs/simusr/...yaml`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("simusr", help="SimUSR (SR from LR images only): prepare the LR-only training folder",
                              description="SimUSR trains any SR network on (son, father) pairs made from LR images "
                              "alone; see docs/training.md (SimUSR and ZSSR).")
    sub = p.add_subparsers(dest="simusr_command", metavar="STEP", required=True)
    prep = sub.add_parser(
        "prepare", help="denoise LR images (BM3D) into the folder SimUSR trains on",
        description="Denoise every LR image with BM3D (the thesis's pre-processing of noisy LR images) and write "
        "OUTDIR/<name>.png, plus OUTDIR/simusr_prepare.json recording what was done. Every input is read "
        "before anything is written; each output is written atomically. Clean LR images need no preparation: "
        "train on their folder directly. LR images from HR ones: restorekit degrade HR -o LR --spec "
        "down:scale=4 --modcrop 4.")
    prep.add_argument("inputs", nargs="+", metavar="INPUT", help="LR image files, folders or benchmark names")
    prep.add_argument("-o", "--out", required=True, help="output folder")
    prep.add_argument("--denoise", choices=("bm3d",), default="bm3d", help="denoiser (default bm3d; an optional "
                      "extra: pip install 'restorekit[simusr]')")
    prep.add_argument("--sigma", type=float, required=True, help="noise std of the LR images, 0-255 scale")
    prep.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    prep.add_argument("-q", "--quiet", action="store_true", help="no line per written image")
    prep.set_defaults(run=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from restorekit.atomic import check_writable, write_json
    from restorekit.cli.common import error_line
    from restorekit.cli.degrade_cmd import collect_inputs
    from restorekit.errors import RestorekitError
    from restorekit.io import read_image, write_image
    from restorekit.train.simusr import bm3d_denoise

    inputs = collect_inputs(args.inputs, recursive=False)
    out_dir = Path(args.out)
    targets = [out_dir / f"{name.rsplit('.', 1)[0]}.png" for _, name in inputs]
    existing = [t for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise RestorekitError(f"{existing[0]}: exists; pass --overwrite to replace it (nothing was written)")
    images = []
    for path, _ in inputs:  # every input decodes before the first output is written
        try:
            images.append(read_image(path)[0])
        except RestorekitError as err:
            raise RestorekitError(error_line(path, err)) from err
    bm3d_denoise(images[0][:, :16, :16], args.sigma)  # --sigma is valid and bm3d is installed: else one line
    try:
        check_writable(out_dir)
    except OSError as err:
        raise RestorekitError(f"{out_dir}: cannot write the output folder ({err.strerror or err})") from err
    for image, target in zip(images, targets):
        write_image(target, bm3d_denoise(image, args.sigma), bit_depth=8, overwrite=True)
        if not args.quiet:
            print(f"{target}  bm3d sigma={args.sigma:g}", file=sys.stderr)
    write_json(out_dir / "simusr_prepare.json", {"denoise": args.denoise, "sigma": args.sigma,
                                                  "inputs": [str(p) for p, _ in inputs],
                                                  "outputs": [t.name for t in targets]})
    return 0
