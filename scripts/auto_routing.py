"""What `restorekit restore --task auto` should run (issue 18 item 7): R-MBN (rain / motion blur / JPEG / haze,
every path in turn), MEPSNet (spatially mixed Gaussian noise / Gaussian blur / pink noise / contrast), or one of
them chosen per image by `restorekit analyze`'s recogniser. Measured on both models' test families.

    .venv/bin/python scripts/shdd_table.py --rows "Input,MEPSNet (zoo mepsnet_shdd),R-MBN (zoo rmbn; every path)" \\
        --limit 10 --out runs/mepsnet/tables_auto10
    .venv/bin/python scripts/mbn_tables.py --rmbn-run weights/rmbn.safetensors --out runs/mbn/tables_step2_long \\
        --only single --rows "Input,R-MBN,MEPSNet (zoo mepsnet_shdd)"
    .venv/bin/python scripts/auto_routing.py          # reads those per-image results; runs only the recogniser

Sets: the SHDD test from BSD100 (first 10 images, easy / moderate / difficult; RGB PSNR) and MBN's single-factor
CBSD68 sets (first 10 images, 192x192; Y PSNR for rain / blur / JPEG, RGB for haze), the same inputs the two
scripts scored. The rule: MEPSNet when the recogniser (zoo `distortion_recognizer_fd`, regions scored at least
`recognition.REPORT_SCORE`, as `restorekit analyze` reports them) finds a distortion MEPSNet was trained on
(`MEPSNET_TYPES`), else R-MBN. "Oracle" takes the better model per image: the most any router could get.
Writes runs/auto_routing/auto_routing.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import mbn_tables  # noqa: E402
import shdd_table  # noqa: E402

from restorekit import evaluation, paths  # noqa: E402
from restorekit.atomic import write_bytes, write_json  # noqa: E402
from restorekit.io import list_images, read_image  # noqa: E402
from restorekit.recognition import REPORT_SCORE, find_distortions, recognise  # noqa: E402
from restorekit.zoo import load_model  # noqa: E402

MEPSNET_TYPES = frozenset({"gaussian_noise", "gaussian_blur", "f_noise"})  # SHDD's types in the recogniser's words
RMBN, MEPSNET = "R-MBN", "MEPSNet"
SHDD_ROWS = {RMBN: "R-MBN (zoo rmbn; every path)", MEPSNET: "MEPSNet (zoo mepsnet_shdd)"}  # scripts/shdd_table.py rows


def per_image(result_file: Path) -> dict[str, float]:
    return {image["name"]: image["psnr"] for image in json.loads(result_file.read_text())["images"]}


def shdd_sets(tables: Path, limit: int):
    """(set label, setup, dataset, {model: cache file}) of the SHDD test levels."""
    for level in shdd_table.LEVELS:
        yield (f"SHDD {level}", shdd_table.setup(level), paths.resolve_dataset("BSD100"),
               {model: shdd_table.cache_file(tables, row, level) for model, row in SHDD_ROWS.items()})


def mbn_sets(cache: Path, crop: int):
    for factor in mbn_tables.SINGLE_COLUMNS:
        name = mbn_tables.set_name((factor,))
        setup = mbn_tables.set_setup((factor,), crop, None)[0]
        yield (f"MBN {factor}", setup, paths.resolve_dataset("CBSD68"),
               {RMBN: cache / f"{mbn_tables.slug_of(name, 'R-MBN')}.json",
                MEPSNET: cache / f"{mbn_tables.slug_of(name, mbn_tables.MEPSNET)}.json"})


def route(recogniser, image) -> tuple[str, list[str]]:
    found = find_distortions(recognise(recogniser, image), min_score=REPORT_SCORE)
    types = sorted({f.type for f in found})
    return (MEPSNET if MEPSNET_TYPES & set(types) else RMBN), types


def measure(label: str, setup, dataset: Path, files: dict[str, Path], recogniser, limit: int) -> dict:
    scores = {model: per_image(path) for model, path in files.items()}
    routed, oracle, chosen = [], [], []
    for path in list_images(dataset)[:limit]:
        degraded, _ = evaluation.make_input(read_image(path)[0], path.name, setup)
        model, types = route(recogniser, degraded)
        chosen.append(model)
        routed.append(scores[model][path.name])
        oracle.append(max(scores[RMBN][path.name], scores[MEPSNET][path.name]))
        print(f"{label} {path.name}: {types} -> {model}", flush=True)
    names = [p.name for p in list_images(dataset)[:limit]]
    return {"set": label, "n": len(names), "to_mepsnet": chosen.count(MEPSNET),
            RMBN: float(np.mean([scores[RMBN][n] for n in names])),
            MEPSNET: float(np.mean([scores[MEPSNET][n] for n in names])),
            "routed": float(np.mean(routed)), "oracle": float(np.mean(oracle))}


def markdown(rows: list[dict]) -> str:
    lines = ["| set | images | routed to MEPSNet | R-MBN always | MEPSNet always | routed by analyze | oracle |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['n']} | {r['to_mepsnet']} | {r[RMBN]:.2f} | {r[MEPSNET]:.2f} | {r['routed']:.2f} | "
              f"{r['oracle']:.2f} |" for r in rows]
    means = {k: np.mean([r[k] for r in rows]) for k in (RMBN, MEPSNET, "routed", "oracle")}
    lines.append(f"| mean of the {len(rows)} sets | | | {means[RMBN]:.2f} | {means[MEPSNET]:.2f} | "
                 f"{means['routed']:.2f} | {means['oracle']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shdd-tables", default=str(REPO / "runs" / "mepsnet" / "tables_auto10"),
                        help="scripts/shdd_table.py's --out of the two models' rows")
    parser.add_argument("--mbn-cache", default=str(REPO / "runs" / "mbn" / "tables_step2_long" / "cache" / "CBSD68"))
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--out", default=str(REPO / "runs" / "auto_routing"))
    args = parser.parse_args(argv)
    recogniser = load_model("distortion_recognizer_fd")
    sets = [*shdd_sets(Path(args.shdd_tables), args.limit), *mbn_sets(Path(args.mbn_cache), args.crop)]
    rows = [measure(*one, recogniser, args.limit) for one in sets]
    out = Path(args.out)
    write_json(out / "auto_routing.json", {"rows": rows, "rule": sorted(MEPSNET_TYPES), "min_score": REPORT_SCORE})
    write_bytes(out / "auto_routing.md", markdown(rows).encode())
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
