"""Put the CPU-trained DL-Net models into the bundled zoo with their cards (issue 15 item 6).

Only backbones whose released weights may be redistributed go in: VDSR (huangzehao/caffe-vdsr, MIT). The
released IDN files state no license, so DL-Net on IDN is measured (docs/BENCHMARKS.md) but not shipped.

    restorekit train configs/dlnet/sr_dlnet_vdsr_x2.yaml --out runs/dlnet/sr_dlnet_vdsr_x2 \\
        --set train.steps=1000 --set "train.scheduler.milestones=[800]"     # ~1 h 15 here: the first x2
    # then x2 (second stage), x3 and x4 from its fp16 zoo weights: the commands in _vdsr_card's cards
    python scripts/dlnet_tables.py --only sr --datasets Set5,Set14 --rows "VDSR (DL-Net)"
    python scripts/publish_dlnet.py --model dlnet_vdsr_x3 runs/dlnet/sr_cache/*/vdsr__dl_net_u*_x3.json

and the inpainting / interpolation models (trained from scratch here, so MIT like all our weights; results from
scripts/dlnet_tables.py's DL-Net rows):

    scripts/dlnet_tables_cpu.sh inpaint & scripts/dlnet_tables_cpu.sh interp & wait
    python scripts/publish_dlnet.py --model dlnet_inpaint
    python scripts/publish_dlnet.py --model dlnet_interp

The results are the tables' evaluations (eval --json results): inputs `blur:kind=gaussian,width=u+down:scale=S` of
the MATLAB Y channel (rounded to 8 bits; MATLAB bicubic, LR rounded), the model given that record, PSNR/SSIM on
Y, border S, BSD100 cropped to 480x320; each card result says how to rerun it with `restorekit eval`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from dlnet_tables import DLNET_SR_RUNS, VDSR_SR_STAGES, sr_train_command

from restorekit.card import Provenance, Result, this_machine
from restorekit.zoo import publish

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference-weights"
HARDWARE = this_machine()
FIRST_X2_RUN = "sr_dlnet_vdsr_x2"
FIRST_X2 = sr_train_command("vdsr", f"runs/dlnet/{FIRST_X2_RUN}", 2, steps=VDSR_SR_STAGES[FIRST_X2_RUN][1],
                            milestone=VDSR_SR_STAGES[FIRST_X2_RUN][2], resume=False)
# dlnet_vdsr_x2 as first published (commit ccdce16): the starting point of the second x2 stage and of x3 / x4.
FIRST_X2_COMMIT = "ccdce16"
FIRST_X2_WEIGHTS = f"weights/dlnet_vdsr_x2.safetensors @ {FIRST_X2_COMMIT} (sha256 e9c02c40df628bab...)"


def _vdsr_card(run: str) -> dict:
    """The card of DL-Net on the released VDSR at one scale (the paper trains one model per scale, spec 1.5): the
    run `run` of VDSR_SR_STAGES, which started from the first x2 zoo weights."""
    scale, steps, milestone, _ = VDSR_SR_STAGES[run]
    first = VDSR_SR_STAGES[FIRST_X2_RUN][1]
    command = (f"git show {FIRST_X2_COMMIT}:weights/dlnet_vdsr_x2.safetensors > first_x2.safetensors && "
               + sr_train_command("vdsr", f"runs/dlnet/{run}", scale, init="first_x2.safetensors", steps=steps,
                                  milestone=milestone, resume=False))
    what = "a second x2 stage" if scale == 2 else f"x{scale} (VDSR is one network for every scale)"
    note = (f"{first:,} steps at x2 from the released VDSR (the first dlnet_vdsr_x2, {FIRST_X2_WEIGHTS}, made by "
            f"`{FIRST_X2}`: the config's 1,500 steps cut to fit a session), then {steps:,} steps of {what} from its "
            f"fp16 weights with a fresh Adam, lr /10 at {milestone:,} (the command)")
    return {
        "family": "dlnet", "task": "sr", "scales": [scale], "levels": (0.0, 3.0), "grey": "y", "license": "MIT",
        "level_name": f"Gaussian blur width u (px) applied before the x{scale} bicubic downscale",
        "description": "DL-Net (recursive likelihood module, K = 5, gamma 1e-3, Eq. 5 as printed) on the released "
                       f"VDSR, fine-tuned on this CPU for SR x{scale} with a known Gaussian blur of width u in "
                       "[0, 3] before the downscale: one model across the blur levels, told each input's u "
                       "(`--level u`). Y channel (colour photos: Y restored, Cb/Cr bicubic). A short CPU "
                       "fine-tune, below the paper's figures (docs/BENCHMARKS.md).",
        "training": {
            "recipe": "supervised L2 fine-tune of the released VDSR inside DL-Net, Adam 1e-4 /10 at 80% of each "
                      "stage, batch 8, one torch thread (CPU recipe; the paper trains 300 epochs of 91 + 400 "
                      "images per scale)",
            "command": command, "note": note, "config": "configs/dlnet/sr_dlnet_vdsr_x2.yaml",
            "data": "T91 + BSD200 (the paper's 91 + BSD-400; CelebA/SUN397-scale data is not here), MATLAB Y, "
                    f"40 px LR / {40 * scale} px HR patches, flips/rot90, Gaussian blur width u ~ U[0, 3] then "
                    f"MATLAB bicubic x{scale}, LR rounded to 8 bits",
            "steps": first + steps, "hardware": HARDWARE,
        },
    }


AUTOENCODER_DATA = ("random 64x64 crops of T91 + BSD200 (CelebA / SUN397 are not here), flips; test: the fixed CBSD68 "
                    "64x64 sets of scripts/dlnet_test_sets.py (680 pairs per set, each with its saved record)")
AUTOENCODER_RECIPE = ("the context-encoder autoencoder trained from scratch at one level for 1,000 steps, then DL-Net "
                      "(K = 5) fine-tuned from it for 600 steps at batch 32 over the whole level range, Adam 1e-3 /10 "
                      "at 480 (the paper: ~500k steps at batch 100)")


USE = {"inpaint": " `restorekit restore IMG64 --task inpaint --level S` fills a centred S x S hole.",
       "interpolate": " The record must carry the mask of missing pixels (Python: the `bernoulli` record of "
                      "restorekit.degrade); `restore` cannot take a user's mask for it yet and says so."}


def _autoencoder_card(task: str, what: str, levels: str, gamma: str, run: str) -> dict:
    return {
        "family": "dlnet", "task": task, "license": "MIT",
        "description": f"DL-Net (recursive likelihood module, K = 5, gamma {gamma}) on the context-encoder "
                       f"autoencoder, 64x64 colour {what} across {levels}: one model told each input's degradation "
                       "record. Trained from scratch on this CPU (no released weights); 64x64 inputs only (the "
                       "channel-wise fully connected bottleneck). A short CPU budget, far under the paper's CelebA "
                       "figures (docs/BENCHMARKS.md, Tables II-III pattern)." + USE[task],
        "training": {"recipe": AUTOENCODER_RECIPE, "data": AUTOENCODER_DATA, "hardware": HARDWARE, "steps": 600,
                     "command": f"scripts/dlnet_tables_cpu.sh {run}", "config": f"configs/dlnet/{run}_dlnet.yaml"},
    }


VDSR_SOURCE = ("vdsr_official.mat", "huangzehao/caffe-vdsr @ 5a83923 : Test/VDSR_Official.mat")
MODELS = {**{f"dlnet_vdsr_x{s}": (ROOT / "runs" / "dlnet" / run, _vdsr_card(run), *VDSR_SOURCE)
             for s, run in DLNET_SR_RUNS["vdsr"].items()},
          "dlnet_inpaint": (ROOT / "runs" / "dlnet" / "inpaint_dlnet",
                            _autoencoder_card("inpaint", "inpainting of a square hole", "holes of side 1-30 px",
                                              "1e-3", "inpaint"), None, None),
          "dlnet_interp": (ROOT / "runs" / "dlnet" / "interp_dlnet",
                           _autoencoder_card("interpolate", "interpolation of randomly missing pixels",
                                             "missing fractions 0-75%", "1e-2", "interp"), None, None)}
TABLES = {"dlnet_inpaint": "inpaint", "dlnet_interp": "interp"}  # runs/dlnet/tables_<part>/dlnet_results.json


def table_results(part: str, name: str) -> list[dict]:
    """The DL-Net row of scripts/dlnet_tables.py's results for one part, as card results (PSNR on [0, 1];
    l1 / l2 on [-1, 1] in the protocol)."""
    rows = json.loads((ROOT / "runs" / "dlnet" / f"tables_{part}" / "dlnet_results.json").read_text())[part]["DL-Net"]
    task = "inpaint" if part == "inpaint" else "interpolate"
    out = []
    for set_name, row in rows.items():
        level = None if set_name.endswith(("centred", "r0_75")) else float(set_name.split("_")[1][1:])
        out.append(Result(dataset=f"CBSD68 64x64 ({set_name}, scripts/dlnet_test_sets.py)", task=task, level=level,
                          psnr=round(row["psnr"], 3), n_images=row["n"],
                          protocol={"l1_pm1": round(row["l1_pm1"], 4), "l2_pm1": round(row["l2_pm1"], 4),
                                    "output": "raw network output (no composite)", "set": set_name},
                          command=f".venv/bin/python scripts/dlnet_tables.py --only {part} "
                                  f"--out runs/dlnet/tables_{part}").model_dump(exclude_none=True))
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def result_of(data: dict, name: str) -> Result:
    """A card result from one evaluation of the tables: the blur width u as its level, the eval command to rerun it."""
    spec = data["protocol"]["degradation"]
    width = float(spec.split("width=")[1].split("+")[0].split(",")[0])
    flags = f'--degrade "{spec}" --grey {data["protocol"]["grey"] or "y"}'
    return Result.from_eval(data, name, flags).model_copy(update={"level": width})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", type=Path, help="restorekit eval --json files of the trained model")
    parser.add_argument("--model", choices=sorted(MODELS), default="dlnet_vdsr_x2", help="which zoo model")
    args = parser.parse_args()
    run, card, source_file, source = MODELS[args.model]
    if args.model in TABLES:  # trained from scratch: no provenance, results from the tables
        updates = {**card, "results": table_results(TABLES[args.model], args.model)}
        print(f"published {publish(run / 'final.safetensors', args.model, updates, folder=ROOT / 'weights')}")
        return
    results = [result_of(json.loads(path.read_text()), args.model).model_dump() for path in args.results]
    original = REFERENCE / source_file
    provenance = Provenance(source=source, license="MIT", original_file=source_file,
                            original_sha256=sha256(original) if original.is_file() else None,
                            imported_with=f"fine-tuned from it: {card['training']['config']} (model.init)")
    updates = {**card, "results": results, "provenance": provenance.model_dump()}
    print(f"published {publish(run / 'final.safetensors', args.model, updates, folder=ROOT / 'weights')}")


if __name__ == "__main__":
    main()
