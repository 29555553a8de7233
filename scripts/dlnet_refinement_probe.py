"""Where DL-Net's u = 0 shortfall comes from (issue 15, docs/BENCHMARKS.md): the same trained DL-Net with its
K - 1 refinement updates switched off (K = 1 is the backbone alone, spec 1.2) and on (K = 5), and the released
bicubic-trained backbone wrapped in the module before any fine-tuning (does the refinement itself cost PSNR?).

    .venv/bin/python scripts/dlnet_refinement_probe.py --model runs/dlnet/sr_dlnet_vdsr_x2_cont/final.safetensors \\
        --reference ../shared/reference-weights/vdsr_official.mat --dataset Set5 --scale 2 --width 0

Same protocol as scripts/dlnet_tables.py (MATLAB Y, `blur:kind=gaussian,width=u+down:scale=S`, PSNR on Y, border S).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from restorekit import evaluation, paths  # noqa: E402
from restorekit.atomic import write_json  # noqa: E402
from restorekit.zoo import load_model  # noqa: E402


def score(model, dataset: Path, setup) -> dict:
    result = evaluation.evaluate(model, dataset, setup)
    return {"psnr": result["psnr"], "images": {i["name"]: i["psnr"] for i in result["images"]}}


def probe(model_path: str, reference: str, dataset: Path, setup, steps: int) -> dict[str, dict]:
    """{variant: {psnr, images}} for the trained model at K = 1 and K = `steps`, and the untrained wrapper."""
    out = {}
    for k in (1, steps):
        model = load_model(model_path)
        model.module.steps = k
        out[f"trained, K = {k}"] = score(model, dataset, setup)
    backbone = load_model(reference)
    out["released backbone alone"] = score(backbone, dataset, setup)
    wrapped = load_model(model_path)
    wrapped.module.backbone.load_state_dict(backbone.module.state_dict())
    wrapped.module.steps = steps
    out[f"released backbone in the module, K = {steps}, not fine-tuned"] = score(wrapped, dataset, setup)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained DL-Net (weights file or zoo name)")
    parser.add_argument("--reference", required=True, help="the released backbone it was fine-tuned from")
    parser.add_argument("--dataset", default="Set5")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--width", type=float, default=0.0, help="the Gaussian blur width u")
    parser.add_argument("--steps", type=int, default=5, help="K of the trained model")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    setup = evaluation.default_setup("sr", scale=args.scale, grey="y",
                                     degrade=f"blur:kind=gaussian,width={args.width:g}+down:scale={args.scale}")
    results = probe(args.model, args.reference, paths.resolve_dataset(args.dataset), setup, args.steps)
    for variant, row in results.items():
        per_image = ", ".join(f"{name.rsplit('.', 1)[0]} {psnr:.2f}" for name, psnr in row["images"].items())
        print(f"{variant:58s} {row['psnr']:.2f} dB  ({per_image})")
    if args.json:
        write_json(args.json, {"dataset": args.dataset, "scale": args.scale, "width": args.width, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
