"""The project's canonical degraded test sets (issue 3, item 6): `restorekit degrade ... --seed 0` over
the shared benchmark images, each set fingerprinted so anyone can check a regenerated copy.

    .venv/bin/python scripts/canonical_test_sets.py                    # writes outputs/degraded/, prints the table
    .venv/bin/python scripts/canonical_test_sets.py --check            # the same, compared with the committed manifest
    .venv/bin/python scripts/canonical_test_sets.py --write-manifest   # rewrites docs/canonical_test_sets.json
    .venv/bin/python scripts/canonical_test_sets.py --only Set5        # sets whose name contains the text

A fingerprint is the SHA-256 of every output's name, shape and decoded pixels (uint8 for PNG, float32
for .npy), in name order: it does not depend on the PNG encoder's compression, only on the values.
The images themselves are not committed (they derive from the shared data, which stays outside the
repository). Bit-exact holds on the same software stack; the manifest records the one it was made on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from restorekit.cli import main as restorekit  # noqa: E402
from restorekit.paths import data_root  # noqa: E402

MANIFEST = REPO / "docs" / "canonical_test_sets.json"


class TestSet(NamedTuple):
    name: str  # <dataset>/<variant>: also the output folder under --out
    dataset: str  # folder under shared/data/test
    spec: str
    options: tuple[str, ...] = ()  # further `restorekit degrade` options


def canonical_sets() -> list[TestSet]:
    """Every set, in the order of docs/degradations.md ("The project's canonical degraded test sets")."""
    sets: list[TestSet] = []
    for sigma in (15, 25, 50):  # Gaussian denoising, KAIR protocol: float noise, np.random.seed(0) for every image
        for dataset in ("Set12", "BSD68", "CBSD68", "McMaster"):
            sets.append(TestSet(f"{dataset}/noise_s{sigma}", dataset, f"noise:sigma={sigma}", ("--seed-mode", "fixed", "--format", "npy")))
    for sigma in (15, 25, 35, 50, 75):  # AdaFM/MATLAB-style noisy PNGs: clipped, uint8
        sets.append(TestSet(f"CBSD68/noise_q_s{sigma}", "CBSD68", f"noise:sigma={sigma},clip=true,quantize=true"))
    for quality in (10, 20, 30, 40):  # JPEG (Pillow), the ARCNN/SwinIR qualities
        for dataset in ("LIVE1", "classic5"):
            sets.append(TestSet(f"{dataset}/jpeg_q{quality}", dataset, f"jpeg:quality={quality}"))
    for scale in (2, 3, 4):  # bicubic SR: MATLAB imresize, uint8 LR; HR modcropped (BSD100: top-left 480x320 first)
        for dataset in ("Set5", "Set14", "BSD100"):
            crop = ("--crop-to", "480x320") if dataset == "BSD100" else ()
            sets.append(TestSet(f"{dataset}/LR_x{scale}", dataset, f"down:scale={scale}", (*crop, "--modcrop", str(scale))))
    for width in (1.3, 2.6):  # DL-Net SR with blur, and Gaussian deblurring
        sets.append(TestSet(f"Set5/blur_u{width}_x3", "Set5", f"blur:kind=gaussian,width={width}+down:scale=3", ("--modcrop", "3")))
        sets.append(TestSet(f"Set14/deblur_u{width}", "Set14", f"blur:kind=gaussian,width={width}"))
    sets += [  # RED-Net text removal, MBN mixed factors, SHDD (12 versions per image)
        TestSet("LIVE1/text_f10", "LIVE1", "inpaint:kind=text,font=10"),
        TestSet("LIVE1/text_f20", "LIVE1", "inpaint:kind=text,font=20"),
        TestSet("BSD100/mbn_mixed", "BSD100", "mbn:factors=1..4"),
        TestSet("Set14/shdd_moderate", "Set14", "shdd:level=moderate", ("--versions", "12")),
    ]
    return sets


def command(test_set: TestSet, data: Path, out: Path) -> list[str]:
    """The `restorekit degrade` arguments that make `test_set` under `out`."""
    return ["degrade", str(data / "test" / test_set.dataset), "-o", str(out / test_set.name),
            "--spec", test_set.spec, "--seed", "0", *test_set.options, "--overwrite", "--quiet"]


def fingerprint(folder: Path) -> tuple[int, str]:
    """(number of images, SHA-256 over each image's name, shape, dtype and decoded pixels, in name order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".npy"))
    for path in files:
        pixels = np.load(path) if path.suffix == ".npy" else np.asarray(Image.open(path))
        digest.update(f"{path.relative_to(folder).as_posix()}|{pixels.shape}|{pixels.dtype}|".encode())
        digest.update(np.ascontiguousarray(pixels).tobytes())
    return len(files), digest.hexdigest()


def software() -> dict[str, str]:
    import PIL
    import skimage
    import torch

    import restorekit

    return {"restorekit": restorekit.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__, "scikit-image": skimage.__version__,
            "machine": platform.machine()}


def generate(test_set: TestSet, data: Path, out: Path) -> dict[str, object]:
    """Run `restorekit degrade` for one set; its manifest entry."""
    args = command(test_set, data, out)
    if restorekit(args) != 0:
        raise SystemExit(f"restorekit {' '.join(args)} failed")
    images, digest = fingerprint(out / test_set.name)
    shown = ["degrade", f"$RESTOREKIT_DATA/test/{test_set.dataset}", "-o", f"outputs/degraded/{test_set.name}",
             "--spec", test_set.spec, "--seed", "0", *test_set.options]
    return {"command": "restorekit " + " ".join(shown), "images": images, "pixels_sha256": digest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "outputs" / "degraded"), help="output root (default outputs/degraded)")
    parser.add_argument("--only", help="only sets whose name contains this text")
    parser.add_argument("--check", action="store_true", help="compare with the committed manifest; exit 1 on a difference")
    parser.add_argument("--write-manifest", action="store_true", help=f"rewrite {MANIFEST.relative_to(REPO)}")
    args = parser.parse_args(argv)
    data = data_root()
    if data is None:
        print("benchmark data not found: set RESTOREKIT_DATA", file=sys.stderr)
        return 1
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {"sets": {}}
    chosen = [s for s in canonical_sets() if not args.only or args.only.lower() in s.name.lower()]
    entries, mismatches = {}, []
    print("| set | spec | images | pixels SHA-256 (first 16) | vs manifest | seconds |")
    print("|---|---|---:|---|---|---:|")
    for test_set in chosen:
        start = time.perf_counter()
        entry = entries[test_set.name] = generate(test_set, data, Path(args.out))
        known = manifest["sets"].get(test_set.name)
        same = "—" if known is None else ("same" if known["pixels_sha256"] == entry["pixels_sha256"] else "DIFFERENT")
        if same != "same" and args.check:
            mismatches.append(test_set.name)
        print(f"| {test_set.name} | `{test_set.spec}` | {entry['images']} | {str(entry['pixels_sha256'])[:16]} | {same} | "
              f"{time.perf_counter() - start:.1f} |", flush=True)
    if args.write_manifest:
        sets = {**manifest["sets"], **entries} if args.only else entries
        MANIFEST.write_text(json.dumps({"format": "restorekit.canonical-test-sets/1", "seed": 0, "software": software(),
                                        "sets": sets}, indent=2) + "\n")
        print(f"\nwrote {MANIFEST.relative_to(REPO)} ({len(sets)} sets)")
    if mismatches:
        print("\ndifferent from the manifest: " + ", ".join(mismatches), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
