"""DL-Net's fixed inpainting and interpolation test sets (issue 15, item 4): 64x64 crops of a colour benchmark,
each degraded 10 times with sampled levels, saved WITH their degradation records, so that every method sees
identical inputs and DL-Net gets each input's own record.

    .venv/bin/python scripts/dlnet_test_sets.py                        # runs/dlnet/test_sets/CBSD68_64/...
    .venv/bin/python scripts/dlnet_test_sets.py --dataset BSD100       # another benchmark
    .venv/bin/python scripts/dlnet_test_sets.py --only inpaint --limit 2   # a smoke

The paper (spec 1.4/1.5) corrupts each of 1,000 CelebA / SUN397 test images (resized to 64x64) with 10 sampled
degradations; neither set is here, so the test images are the central 64x64 crops of CBSD68 (68 images, disjoint
from the BSD200 + T91 training images) and each set holds 680 pairs. Levels (Tables II-V):

| set | spec | versions |
|---|---|---|
| inpaint_s10 / _s20 / _s30 | `inpaint:kind=square,size=S,shift=10,fill=mean`: an SxS hole, centre shifted U{-10..10} per axis | 10 |
| inpaint_s20_centred | `inpaint:kind=square,size=20,shift=0,fill=mean` (10 identical copies: the paper's count) | 10 |
| interp_r15 / _r45 / _r75 | `bernoulli:ratio=R,fill=mean`: each pixel (all channels) removed with probability R | 10 |
| interp_r0_75 | `bernoulli:ratio=0..0.75,fill=mean`: R drawn per version (Table III's "r in [0, 75%] avg" column) | 10 |

Holes hold the ImageNet mean colour of On-Demand Learning's code (`fill=mean`; the training configs in
configs/dlnet use the same fill, and the autoencoders refill known holes with it anyway), which 8-bit PNGs store
exactly, so the saved inputs ARE the degraded images. Layout of a set (a paired folder for `restorekit eval`):

    <root>/<set>/clean/<image>_<v>.png        the 64x64 crop (one copy per version: pairs match by name)
    <root>/<set>/degraded/<image>_<v>.png     the degraded input
    <root>/<set>/degraded/<image>_<v>.json    its record (`restorekit degrade`'s sidecar), read by `eval`

    restorekit eval --model runs/dlnet/inpaint_dlnet/final.safetensors \\
        --dataset runs/dlnet/test_sets/CBSD68_64/inpaint_s20 --task inpaint --json out.json

Everything comes from `restorekit degrade --seed 0 --versions 10` (per-version seeds from the image name), so
the sets are deterministic; `manifest.json` in the root fingerprints each (scripts/canonical_test_sets.py's
SHA-256 over names, shapes and pixels). The folder is under runs/ (git-ignored); regenerate rather than commit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from canonical_test_sets import fingerprint  # noqa: E402

from restorekit import io, ops  # noqa: E402
from restorekit.cli import main as restorekit  # noqa: E402
from restorekit.paths import data_root  # noqa: E402

SIDE = 64  # the autoencoder's input size (spec 1.3(a))
VERSIONS = 10  # degradations per test image (spec 1.5)
ROOT = REPO / "runs" / "dlnet" / "test_sets"


class DLNetSet(NamedTuple):
    name: str
    task: str  # restorekit eval --task
    spec: str
    column: str  # the paper's column label


def dlnet_sets() -> list[DLNetSet]:
    """The evaluation levels of Tables II-V, in their column order."""
    sets = [DLNetSet(f"inpaint_s{s}", "inpaint", f"inpaint:kind=square,size={s},shift=10,fill=mean", f"s = {s}")
            for s in (10, 20, 30)]
    sets.append(DLNetSet("inpaint_s20_centred", "inpaint", "inpaint:kind=square,size=20,shift=0,fill=mean",
                         "s = 20, centered"))
    sets += [DLNetSet(f"interp_r{r}", "interpolate", f"bernoulli:ratio={r / 100:g},fill=mean", f"r = {r}%")
             for r in (15, 45, 75)]
    sets.append(DLNetSet("interp_r0_75", "interpolate", "bernoulli:ratio=0..0.75,fill=mean", "r in [0%,75%] avg"))
    return sets


def set_root(dataset: str, root: Path = ROOT) -> Path:
    return root / f"{dataset}_{SIDE}"


def write_crops(source: Path, out: Path, limit: int | None) -> list[Path]:
    """The central SIDE x SIDE crop of each image of `source` as out/<stem>.png (8-bit RGB)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in io.list_images(source)[:limit]:
        image = io.read_image(path)[0]
        if image.shape[0] == 1:
            image = image.expand(3, -1, -1)
        height, width = image.shape[-2:]
        top, left = (height - SIDE) // 2, (width - SIDE) // 2
        crop = ops.crop_top_left(image[:, top:, left:], SIDE, SIDE)
        target = out / f"{path.stem}.png"
        io.write_image(target, crop, bit_depth=8)
        written.append(target)
    return written


def make_set(test_set: DLNetSet, crops: list[Path], crop_dir: Path, out: Path, seed: int = 0) -> dict:
    """degraded/ through `restorekit degrade` (records as sidecars), clean/ as one crop copy per version."""
    if out.exists():
        shutil.rmtree(out)
    args = ["degrade", str(crop_dir), "-o", str(out / "degraded"), "--spec", test_set.spec, "--seed", str(seed),
            "--versions", str(VERSIONS), "--quiet"]
    if restorekit(args) != 0:
        raise SystemExit(f"restorekit {' '.join(args)} failed")
    (out / "clean").mkdir()
    for crop in crops:
        for version in range(VERSIONS):
            shutil.copyfile(crop, out / "clean" / f"{crop.stem}_{version}.png")
    images, digest = fingerprint(out / "degraded")
    return {"spec": test_set.spec, "task": test_set.task, "column": test_set.column, "versions": VERSIONS,
            "pairs": images, "degraded_sha256": digest,
            "command": f"restorekit degrade CROPS -o {test_set.name}/degraded --spec '{test_set.spec}' "
                       f"--seed {seed} --versions {VERSIONS}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="CBSD68", help="colour benchmark under RESTOREKIT_DATA/test (default CBSD68)")
    parser.add_argument("--root", default=str(ROOT), help="output root (default runs/dlnet/test_sets)")
    parser.add_argument("--only", help="only sets whose name contains this text (inpaint, interp, s20, ...)")
    parser.add_argument("--limit", type=int, help="only the first N images (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = data_root()
    if data is None:
        print("benchmark data not found: set RESTOREKIT_DATA", file=sys.stderr)
        return 1
    root = set_root(args.dataset, Path(args.root))
    crops = write_crops(data / "test" / args.dataset, root / "crops", args.limit)
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update({"format": "restorekit.dlnet-test-sets/1", "dataset": args.dataset, "side": SIDE,
                     "images": len(crops), "seed": args.seed})
    manifest.setdefault("sets", {})
    for test_set in dlnet_sets():
        if args.only and args.only not in test_set.name:
            continue
        entry = manifest["sets"][test_set.name] = make_set(test_set, crops, root / "crops", root / test_set.name,
                                                           args.seed)
        print(f"{root / test_set.name}: {entry['pairs']} pairs, `{test_set.spec}`, {entry['degraded_sha256'][:16]}")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
