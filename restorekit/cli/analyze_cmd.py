"""`restorekit analyze IMAGE`: what damage is where and how strong (thesis ch. 6; issue 18 item 4).

    restorekit analyze photo.jpg                                  # a table of the distortions found
    restorekit analyze photo.jpg --json report.json --overlay boxes.png

The zoo's distortion recogniser (or --model) labels every pixel with a type x level (`restorekit.recognition`);
each connected region of one type is reported with its box, level and score. A JPEG file's quality is also read
exactly from its quantisation tables (a decoded JPEG's from its pixels; `restorekit.estimate`), reported under
"estimates" with the noise sigma.
JSON: {"image", "size": [w, h], "model", "distortions": [{"type", "level", "level_index", "box": [x0, y0, x1, y1],
"score", "area"}], "estimates": {...}}; type names are the degradation vocabulary's
(restorekit/degrade/distortions.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from restorekit.errors import RestorekitError

PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230))  # one colour per type, in the vocabulary's order


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze", help="find the distortions in an image: types, levels and regions",
        description="Find which distortions an image has, where and how strong (the 8 Flickr-Distortion types of "
        "the thesis, ch. 6), with the zoo's distortion recogniser. Prints a table; --json writes the report, "
        "--overlay a copy of the image with the regions drawn.")
    p.add_argument("image", help="the image file")
    p.add_argument("--model", help="zoo name or weights file of a distortion recogniser (default: the zoo's)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--overlay", metavar="PNG", help="write the image with the regions drawn and labelled")
    p.add_argument("--min-area", type=float, help="smallest region reported, fraction of the image (default 0.005)")
    p.add_argument("--min-score", type=float, help="report regions at least this sure of their type "
                   "(default 0.4; 0 lists every region, as the mAP scoring does)")
    p.add_argument("--overwrite", action="store_true", help="replace existing --json / --overlay files")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def analyze(image_path: str | Path, model_name: str | None = None, device: str = "cpu",
            min_area: float | None = None, min_score: float | None = None) -> tuple[dict, torch.Tensor]:
    """The report of one image file, and the image."""
    from restorekit import io
    from restorekit.api import choose_zoo_model
    from restorekit.estimate import estimate_level, noise_sigma
    from restorekit.recognition import MIN_AREA, REPORT_SCORE, find_distortions, recognise
    from restorekit.tasks import ANALYZE
    from restorekit.zoo import load_model

    image, _ = io.read_image(image_path)
    name = model_name or choose_zoo_model(ANALYZE)
    model = load_model(name)
    if ANALYZE not in model.info.tasks:
        raise RestorekitError(f"model {name!r} restores images; analyze needs a distortion recogniser "
                              f"(task {ANALYZE!r})")
    found = find_distortions(recognise(model, image, device), MIN_AREA if min_area is None else min_area,
                             REPORT_SCORE if min_score is None else min_score)
    estimates = {"noise_sigma": round(noise_sigma(image[:3]), 2)}
    try:  # exact from a JPEG file's tables, else from a decoded JPEG's pixels; absent when neither shows one
        estimates["jpeg_quality"] = estimate_level("jpeg", image, image_path).level
    except RestorekitError:
        pass
    report = {"image": str(image_path), "size": [image.shape[-1], image.shape[-2]], "model": name,
              "distortions": [f.to_json() for f in found], "estimates": estimates}
    return report, image


def draw_overlay(image: torch.Tensor, distortions: list[dict]) -> torch.Tensor:
    """The image (RGB) with each region's box and 'type level score' drawn in its type's colour."""
    from PIL import Image, ImageDraw

    from restorekit.io import to_array, to_tensor
    from restorekit.recognition import TYPES

    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    picture = Image.fromarray(to_array(rgb))
    draw = ImageDraw.Draw(picture)
    for item in distortions:
        colour = PALETTE[TYPES.index(item["type"]) % len(PALETTE)]
        x0, y0, x1, y1 = item["box"]
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=2)
        draw.text((x0 + 3, y0 + 2), f"{item['type']} {item['level']:g} ({item['score']:.2f})", fill=colour)
    return to_tensor(np.asarray(picture))


def run(args: argparse.Namespace) -> int:
    from restorekit import io
    from restorekit.atomic import write_json

    for target in (args.json, args.overlay):
        if target and Path(target).exists() and not args.overwrite:
            raise RestorekitError(f"{target}: exists; pass --overwrite to replace it")
    if args.overlay and Path(args.overlay).suffix.lower() != ".png":
        raise RestorekitError(f"{args.overlay}: the overlay is written as PNG; name it .png")
    report, image = analyze(args.image, args.model, args.device, args.min_area, args.min_score)
    if args.json:
        write_json(args.json, report)
    if args.overlay:
        io.write_image(args.overlay, draw_overlay(image, report["distortions"]), overwrite=True)
    found = report["distortions"]
    print(f"{args.image}: {len(found)} distortion region(s) found by {report['model']}"
          + (":" if found else " (it looks undistorted to the recogniser)"))
    for item in found:
        print(f"  {item['type']:<20} level {item['level']:<8g} box {item['box']}  score {item['score']:.2f}  "
              f"area {100 * item['area']:.1f}%")
    estimates = ", ".join(f"{k} {v:g}" for k, v in report["estimates"].items())
    print(f"  estimates: {estimates}", file=sys.stdout)
    return 0
