"""`restorekit distortion-set`: Flickr-Distortion-style recognition sets (thesis ch. 6) from any clean images.

    restorekit distortion-set classification BSD200 -o data/fd_cls            # 24 whole-image versions per source
    restorekit distortion-set basic BSD200 -o data/fd_basic --versions 20       # 1-4 distorted boxes per 300x300 crop
    restorekit distortion-set difficult BSD100 -o data/fd_difficult             # 5-9 smaller boxes

The set, its splits and its labels: restorekit/data/distortion_sets.py. Resumable (existing images are kept;
every image is seeded by its source name and version), labels.json written last.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from restorekit.cli.common import progress_bar
from restorekit.cli.degrade_cmd import collect_inputs
from restorekit.data.distortion_sets import KINDS, generate


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distortion-set", help="write a Flickr-Distortion-style classification or detection set",
        description="Distort clean images with the 8 Flickr-Distortion types (thesis ch. 6) into a classification "
        "set (every type x 3 levels, whole image) or a detection set (basic: 1-4 boxes, difficult: 5-9), with "
        "labels.json (split, type, level, box per distortion).")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, or dataset names (BSD200, ...)")
    p.add_argument("-o", "--out", required=True, help="output folder (images/ and labels.json)")
    p.add_argument("--crop", type=int, help="centre crop side (default 224 classification, 300 detection)")
    p.add_argument("--versions", type=int, default=20, help="detection versions per source (thesis: 20)")
    p.add_argument("--split-by", choices=("source", "image"), default="source",
                   help="source: no split shares a source image (default); image: the thesis's random split")
    p.add_argument("--limit", type=int, help="first N sources only")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from restorekit import io

    found = collect_inputs(args.inputs, recursive=False)[: args.limit]
    sources = [(name, lambda path=path: io.read_image(path)[0]) for path, name in found]
    with progress_bar(sys.stderr.isatty()) as progress:
        bar = progress.add_task(args.kind, total=None)
        labels = generate(args.kind, sources, Path(args.out), crop=args.crop, versions=args.versions, seed=args.seed,
                          split_by=args.split_by, on_image=lambda rel: progress.advance(bar))
    counts = {}
    for item in labels["items"]:
        counts[item["split"]] = counts.get(item["split"], 0) + 1
    skipped = labels["skipped_smaller_than_crop"]
    note = f"; {len(skipped)} sources smaller than the crop skipped" if skipped else ""
    print(f"restorekit: {len(labels['items'])} images ({', '.join(f'{k} {v}' for k, v in counts.items())}) -> "
          f"{args.out}{note}", file=sys.stderr)
    return 0
