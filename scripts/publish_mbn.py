"""Put the CPU-trained R-MBN into the bundled zoo with its card (issue 17): the model `restorekit restore --task
auto` runs when the degradation is unknown (every path in turn, J -> H -> B -> R), and, under a named task
(derain, deblur, jpeg, dehaze), that factor's path. Trained here from scratch (no MBN weights were released).

    restorekit train configs/mbn/mbn_rmbn_t91_cpu.yaml --out runs/mbn/mbn_rmbn_t91_cpu --resume   # ~70 min here
    .venv/bin/python scripts/mbn_tables.py --only single --only rain100h --rows "Input,R-MBN" --rain100h-limit 10
    .venv/bin/python scripts/publish_mbn.py

The card's results are the R-MBN cells of scripts/mbn_tables.py (its cache under runs/mbn/tables), each with the
`restorekit eval` command that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mbn_tables import RUNS, SINGLE_COLUMNS, eval_command, rain100h_command, set_name, slug_of

from restorekit.card import Result, this_machine
from restorekit.zoo import publish

ROOT = Path(__file__).resolve().parent.parent
NAME = "rmbn"
ROW = "R-MBN"  # the tables' row whose cells the card lists
CARD = {
    "family": "mbn",
    "task": "restore",
    "blind": True,
    "license": "MIT",
    "description": "R-MBN (MBN paper): one multi-branch network for rain streaks, motion blur, JPEG and haze, "
                   "48/32 channels (2.8M parameters; the paper's 96/64 has 11.3M), run recurrently J -> H -> B -> R "
                   "when the factor is unknown (--task auto) or along one factor's path (--task derain / deblur / "
                   "jpeg / dehaze). Trained from scratch on this CPU (no MBN weights were released), He init (init=kaiming). "
                   "A short CPU budget: as MBN (factor given) it is within 0.5 dB of dedicated networks, but run "
                   "recurrently it damages images without haze or rain (JPEG -6 dB on CBSD68 crops; its haze path "
                   "is a fixed offset, the hierarchy block M7 having died in step 1 at this budget: "
                   "docs/BENCHMARKS.md, scripts/mbn_diagnose.py).",
    "training": {
        "recipe": "staged: step 1 (MBN) 1,800 single-factor minibatches of 4 in MBN cycles (1 haze, 1 rain, "
                  "1 JPEG, 3 motion blur), -1.1 SSIM + 0.75 L1, Adam 1e-4 /10 at 1,500, He init with residual and "
                  "output ends x0.1; step 2 (R-MBN) 150 recurrent steps, 0.8 own-factor step + 0.2 last step, input "
                  "branches frozen, lr 1e-5",
        "command": "restorekit train configs/mbn/mbn_rmbn_t91_cpu.yaml --out runs/mbn/mbn_rmbn_t91_cpu",
        "config": "configs/mbn/mbn_rmbn_t91_cpu.yaml",
        "data": "T91, 64 px crops (rain 32 px), the four factors synthesised with MBN App. C's ranges (haze beta "
                "0.08-0.2 / airlight 0.8-1, GIMP-style rain, ImageNet-C motion blur presets 1-6, Pillow JPEG q "
                "15-50); T91 rather than BSD200 because Rain100H's clean images are BSD crops",
        "steps": 1950,
        "hardware": this_machine("one to three other jobs"),
    },
}


def results(tables: Path, dataset: str, limit: int, crop: int) -> list[dict]:
    """The R-MBN cells of the tables' cache as card results, each with its reproducing command."""
    out = []
    for factor in SINGLE_COLUMNS:
        name = set_name((factor,))
        path = tables / "cache" / dataset / f"{slug_of(name, ROW)}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            command = eval_command(NAME, (factor,), dataset, limit, crop, "auto")
            out.append(Result.from_eval(data, NAME).model_copy(update={"command": command}).model_dump())
    rain100h = tables / "cache" / "Rain100H" / f"{slug_of(ROW)}.json"
    if rain100h.is_file():
        data = json.loads(rain100h.read_text())
        command = rain100h_command(NAME, data["n_images"] if data["n_images"] < 50 else None, "auto")
        out.append(Result.from_eval(data, NAME).model_copy(update={"command": command}).model_dump())
    return out


# The longer step 2 (issue 17 follow-up): the same MBN joint weights, 900 recurrent steps at lr 1e-4.
STEP2_LONG = {
    "recipe": CARD["training"]["recipe"].replace(
        "step 2 (R-MBN) 150 recurrent steps, 0.8 own-factor step + 0.2 last step, input branches frozen, lr 1e-5",
        "step 2 (R-MBN) 900 recurrent steps, 0.8 own-factor step + 0.2 last step, input branches frozen, lr 1e-4 "
        "/10 at 600 (configs/mbn/rmbn_step2_long_cpu.yaml)"),
    "command": CARD["training"]["command"] + " (step 1); restorekit train configs/mbn/rmbn_step2_long_cpu.yaml "
               "--out runs/mbn/rmbn_step2_long (step 2)",
    "config": "configs/mbn/rmbn_step2_long_cpu.yaml",
    "steps": 1800 + 900,
}
assert STEP2_LONG["recipe"] != CARD["training"]["recipe"], "the step-2 text of CARD changed: update STEP2_LONG"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="mbn_rmbn_t91_cpu", choices=("mbn_rmbn_t91_cpu", "rmbn_step2_long"),
                        help="the run whose final weights are published")
    parser.add_argument("--tables", type=Path, default=RUNS / "tables", help="scripts/mbn_tables.py's output")
    parser.add_argument("--dataset", default="CBSD68")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--crop", type=int, default=192)
    args = parser.parse_args()
    found = results(args.tables, args.dataset, args.limit, args.crop)
    run = RUNS / args.run / "final.safetensors"
    card = CARD if args.run == "mbn_rmbn_t91_cpu" else {
        **CARD, "training": {**CARD["training"], **STEP2_LONG},
        "description": CARD["description"].replace("(JPEG -6 dB on CBSD68 crops;", "(JPEG -5.5 dB on CBSD68 crops "
                                                   "after the longer step 2;")}
    print(f"published {publish(run, NAME, {**card, 'results': found}, folder=ROOT / 'weights')} "
          f"with {len(found)} results")


if __name__ == "__main__":
    main()
