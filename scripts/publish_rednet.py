"""Put the CPU-trained RED-Nets into the bundled zoo with their cards (issue 16): trained here (no RED-Net weights
were released in a form that could be had), so the cards' provenance is this repository.

    restorekit train configs/rednet/denoise_blind_red30.yaml --out runs/rednet/denoise_blind_red30   # phase 1
    restorekit train configs/rednet/denoise_blind_red30_phase2.yaml --out runs/rednet/denoise_blind_red30_phase2
    restorekit train configs/rednet/denoise_blind_red30_phase3.yaml --out runs/rednet/denoise_blind_red30_phase3
    restorekit eval --model runs/rednet/denoise_blind_red30_phase3/final.safetensors --dataset Set12 \\
        --task denoise --levels 10,30,50,70 --json outputs/rednet/red30_blind_Set12.json  # BSD68 likewise
    python scripts/publish_rednet.py outputs/rednet/red30_blind_Set12.json outputs/rednet/red30_blind_BSD68.json
    python scripts/publish_rednet.py --model rednet_jpeg outputs/rednet/red30_jpeg2_LIVE1.json  # phase 2's grid
    python scripts/publish_rednet.py --model rednet_deblur_gaussian outputs/rednet/red30_deblur_blind_Set12.json
    python scripts/publish_rednet.py --model rednet_inpaint_text outputs/rednet/red30_inpaint_text_LIVE1.json
    python scripts/publish_rednet.py --model rednet_inpaint_scratch outputs/rednet/red30_inpaint_scratch_LIVE1.json

The JPEG model starts from the denoiser's phase-2 weights (the zoo model up to git 95c426d; its configs
say how to restore it). The blind SR model (phases 1-5 of configs/rednet/sr_blind_red30*.yaml):
    python scripts/publish_rednet.py --model rednet_sr_blind outputs/rednet/red30_sr5_Set5.json \
        outputs/rednet/red30_sr5_Set14.json outputs/rednet/red30_sr5_BSD100.json
The two one-kernel deblurring specialists (RED-Net Table 10; `--task deblur` never picks them, by their cards'
`degradation`), from the grids of docs/BENCHMARKS.md's Table 10 rows:
    python scripts/publish_rednet.py --model rednet_deblur_disk outputs/rednet/red30_deblur_disk_Set12.json
    python scripts/publish_rednet.py --model rednet_deblur_motion outputs/rednet/red30_deblur_motion_Set12.json
Results are the level grids' rows, each with its protocol and the `restorekit eval` command that reruns it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from restorekit.card import Result, this_machine
from restorekit.zoo import publish

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "rednet"
RED30 = ("RED30 (15 valid 3x3 convs + 15 mirrored deconvs, 64 features, symmetric skips every 2 layers, global "
         "residual)")
DENOISER_START = ("fine-tuned from the blind grey denoiser after its phase 2 (1,800 steps; zoo "
                  "`rednet_denoise_blind` at git 95c426d), the same RED30 weights")


def _train(command: str, config: str, recipe: str, data: str, steps: int) -> dict:
    return {"recipe": recipe, "command": command, "config": config, "data": data, "steps": steps,
            "hardware": this_machine("one other training job")}


def _phases(*configs: str) -> str:
    return " && ".join(f"restorekit train configs/rednet/{c}.yaml --out runs/rednet/{c}" for c in configs)


REDNET_DENOISE_BLIND = {
    "family": "rednet", "task": "denoise", "levels": (10.0, 70.0), "blind": True, "grey": "luma", "license": "MIT",
    "level_name": "Gaussian noise sigma (0-255 scale)",
    "description": f"{RED30}: ONE blind grey denoiser for Gaussian noise sigma 10-70 (RED-Net Table 3's blind "
                   "model), trained from scratch on this CPU. A short CPU budget: far below the paper "
                   "(docs/BENCHMARKS.md).",
    "training": _train(
        _phases("denoise_blind_red30", "denoise_blind_red30_phase2", "denoise_blind_red30_phase3"),
        "configs/rednet/denoise_blind_red30_phase3.yaml (init: phase 2's weights; phases 1-2: "
        "configs/rednet/denoise_blind_red30.yaml, denoise_blind_red30_phase2.yaml)",
        "supervised MSE from scratch, batch 16, 50x50 patches: phase 1 1,200 steps at Adam 1e-4 (the paper's lr) "
        "x0.5 at 60% / 85%; phase 2 600 steps at 4e-4, /4 at 400; phase 3 4,000 steps at 4e-4, /4 at 3,000, "
        "fresh Adam (CPU recipe)",
        "Train400 (DnCNN's 400 grey 180x180 BSD crops; the paper's 300 BSD images), 50x50 patches, flips/rot90, "
        "sigma drawn from {10, 30, 50, 70} per patch (float noise, not clipped)", 5800),
}
REDNET_JPEG = {
    "family": "rednet", "task": "jpeg", "levels": (10.0, 20.0), "blind": True, "grey": "y", "license": "MIT",
    "level_name": "JPEG quality (Pillow/libjpeg encoder) of the Y channel, compressed as a grey image",
    "description": f"{RED30}: ONE JPEG deblocking network for quality 10 and 20 on the Y channel (RED-Net Table 9), "
                   f"{DENOISER_START}. Colour images are restored on their Y plane. A short CPU budget: below the "
                   "paper (docs/BENCHMARKS.md).",
    "training": _train(
        _phases("jpeg_red30_q10_q20_from_denoise", "jpeg_red30_q10_q20_phase2"),
        "configs/rednet/jpeg_red30_q10_q20_phase2.yaml (init: phase 1, configs/rednet/jpeg_red30_q10_q20_from_denoise.yaml)",
        "supervised MSE, batch 16, 50x50 patches, from the denoiser: phase 1 900 steps at Adam 2e-4 x0.5 at 600 / "
        "800; phase 2 1,200 steps at 4e-4, /4 at 900, fresh Adam (CPU recipe)",
        "BSD200, MATLAB Y compressed as a grey JPEG at quality 10 or 20 per patch, flips/rot90", 2100),
}
ZOO_DENOISER_START = ("fine-tuned from the zoo's blind grey denoiser `rednet_denoise_blind` (5,800 steps, git "
                     "d2e4a4c), the same RED30 weights")
REDNET_DEBLUR_GAUSSIAN = {
    "family": "rednet", "task": "deblur", "levels": (0.4, 2.6), "blind": True, "grey": "luma", "license": "MIT",
    "level_name": "Gaussian blur width (standard deviation, px)",
    "description": f"{RED30}: ONE grey Gaussian deblurring network for widths 0.4-2.6 px, no width given (the "
                   f"paper's Table 10 trains one model per kernel; a width-1.6-only model over-sharpens milder blur "
                   f"far below the input and amplifies 8-bit rounding), {ZOO_DENOISER_START}. Trained on 8-bit-rounded "
                   "input with light noise (sigma <= 2); colour images are restored on their luma. A short CPU "
                   "budget (docs/BENCHMARKS.md).",
    "training": _train(
        _phases("deblur_gaussian_red30_from_denoise", "deblur_gaussian_blind_red30"),
        "configs/rednet/deblur_gaussian_blind_red30.yaml (init: phase 1, configs/rednet/"
        "deblur_gaussian_red30_from_denoise.yaml, which starts from weights/rednet_denoise_blind.safetensors)",
        "supervised MSE, batch 16, 50x50 patches: phase 1 1,200 steps at width 1.6 only on float blurred input "
        "(the paper's protocol), Adam 2e-4 x0.5 at 700 / 1,000; phase 2 1,200 steps with the width drawn per patch "
        "from 0.4..2.6, Gaussian noise sigma 0..2 and rounding to 8 bits, same schedule, fresh Adam (CPU recipe)",
        "BSD200 grey luma, Gaussian blur (replicate borders), flips/rot90", 2400),
}
REDNET_INPAINT_TEXT = {
    "family": "rednet", "task": "inpaint", "blind": True, "license": "MIT",
    "description": f"{RED30}, colour: removes overlaid text (font 10 or 20) WITHOUT a mask (RED-Net Sec. 4.6's text "
                   f"removal), {ZOO_DENOISER_START} except the first conv and last deconv (1 channel there, 3 here). "
                   "A short CPU budget (docs/BENCHMARKS.md).",
    "training": _train(
        _phases("inpaint_text_red30_from_denoise"), "configs/rednet/inpaint_text_red30_from_denoise.yaml",
        "supervised MSE, batch 16, 50x50 patches, 1,200 steps at Adam 2e-4 x0.5 at 700 / 1,000 (CPU recipe)",
        "BSD200 colour, random lower-case text in white at font 10 or 20 per patch (restorekit's "
        "`inpaint:kind=text`), flips/rot90", 1200),
}
REDNET_INPAINT_SCRATCH = {
    **REDNET_INPAINT_TEXT,
    "description": f"{RED30}, colour: removes random scratches WITHOUT a mask (RED-Net Sec. 4.6's scratch removal), "
                   f"{ZOO_DENOISER_START} except the first conv and last deconv (1 channel there, 3 here). A short "
                   "CPU budget (docs/BENCHMARKS.md).",
    "training": _train(
        _phases("inpaint_scratch_red30_from_denoise"), "configs/rednet/inpaint_scratch_red30_from_denoise.yaml",
        "supervised MSE, batch 16, 50x50 patches, 1,200 steps at Adam 2e-4 x0.5 at 700 / 1,000 (CPU recipe)",
        "BSD200 colour, random scratches per patch (restorekit's `inpaint:kind=scratch`), flips/rot90", 1200),
}
REDNET_SR_BLIND = {
    "family": "rednet", "task": "sr", "scales": (2, 3, 4), "blind": True, "grey": "y", "license": "MIT",
    "description": f"{RED30}, Y channel: ONE blind SR network for x2, x3 and x4 on the MATLAB-bicubic-upscaled input "
                   "(RED-Net Table 8's blind model; the model upscales the LR image itself, `--scale S`), "
                   f"{DENOISER_START}. Colour photos: Y restored, Cb/Cr bicubic. A short CPU budget: below the paper "
                   "and the released VDSR (docs/BENCHMARKS.md).",
    "training": _train(
        _phases("sr_blind_red30_from_denoise", "sr_blind_red30_phase2", "sr_blind_red30_phase3",
                "sr_blind_red30_phase4", "sr_blind_red30_phase5"),
        "configs/rednet/sr_blind_red30_phase5.yaml (init: phase 4; phases 1-4: configs/rednet/"
        "sr_blind_red30_from_denoise.yaml, _phase2, _phase3, _phase4)",
        "supervised MSE, batch 16, one scale per batch: phases 1-3 (3,700 steps, Adam 2e-4 .. 5e-5) on fixed 20-px "
        "LR patches; phase 4 1,500 steps on the paper's fixed patch of the upscaled image (48 px at every scale), "
        "Adam 1e-4 /2 at 1,100; phase 5 4,000 steps at 5e-5 keeping the weights' EMA (0.999); x2 drawn in 3 of 5 "
        "steps from phase 3 on (CPU recipe)",
        "T91 + BSD200 (the paper's 91 + 200 BSD images; BSD100 is a test set), MATLAB Y, MATLAB-bicubic downscale "
        "rounded to 8 bits, flips/rot90", 9200),
}


def _one_kernel(kernel: str, spec: str, config: str, gain: str) -> dict:
    """A Table 10 specialist: one RED30 per blur kernel; its card's `degradation` keeps `--task deblur` off it."""
    return {
        "family": "rednet", "task": "deblur", "degradation": spec, "grey": "luma", "license": "MIT",
        "description": f"{RED30}: grey NON-BLIND deblurring of ONE kernel, {kernel} (`{spec}`; RED-Net Table 10 "
                       f"trains one model per kernel), {ZOO_DENOISER_START}. Trained on float blurred input (no "
                       f"rounding, no noise: the paper's setting); {gain}. Not for photos of unknown blur: "
                       "`--task deblur` never picks it (it runs `rednet_deblur_gaussian`); run it with "
                       "`--model`. A short CPU budget (docs/BENCHMARKS.md).",
        "training": _train(
            _phases(config), f"configs/rednet/{config}.yaml (starts from weights/rednet_denoise_blind.safetensors)",
            "supervised MSE, batch 16, 50x50 patches, 1,200 steps at Adam 2e-4 x0.5 at 700 / 1,000 (CPU recipe)",
            f"BSD200 grey luma blurred by `{spec}` (replicate borders), flips/rot90", 1200),
    }


REDNET_DEBLUR_DISK = _one_kernel("a disk (pillbox) of radius 4", "blur:kind=disk,radius=4",
                                 "deblur_disk_red30_from_denoise", "Set12 +6.96 dB over the blurred input")
REDNET_DEBLUR_MOTION = _one_kernel(
    "camera shake along a random trajectory of length 15 px, a new trajectory per patch and per image (the paper's "
    "motion model has one fixed kernel)", "blur:kind=trajectory,length=15", "deblur_motion_red30_from_denoise",
    "weak: Set12 only +1.07 dB over the blurred input, since every image has its own shake")
MODELS = {
    "rednet_denoise_blind": (RUNS / "denoise_blind_red30_phase3", REDNET_DENOISE_BLIND),
    "rednet_jpeg": (RUNS / "jpeg_red30_q10_q20_phase2", REDNET_JPEG),
    "rednet_deblur_gaussian": (RUNS / "deblur_gaussian_blind_red30", REDNET_DEBLUR_GAUSSIAN),
    "rednet_inpaint_text": (RUNS / "inpaint_text_red30_from_denoise", REDNET_INPAINT_TEXT),
    "rednet_inpaint_scratch": (RUNS / "inpaint_scratch_red30_from_denoise", REDNET_INPAINT_SCRATCH),
    "rednet_sr_blind": (RUNS / "sr_blind_red30_phase5", REDNET_SR_BLIND),
    "rednet_deblur_disk": (RUNS / "deblur_disk_red30_from_denoise", REDNET_DEBLUR_DISK),
    "rednet_deblur_motion": (RUNS / "deblur_motion_red30_from_denoise", REDNET_DEBLUR_MOTION),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", nargs="*", type=Path, help="restorekit eval --levels --json files of the model")
    parser.add_argument("--model", choices=sorted(MODELS), default="rednet_denoise_blind", help="which zoo model")
    args = parser.parse_args()
    run, card = MODELS[args.model]
    results = [result.model_dump() for path in args.grids
               for result in Result.from_grid(json.loads(path.read_text()), args.model)]
    print(f"published {publish(run / 'final.safetensors', args.model, {**card, 'results': results}, folder=ROOT / 'weights')}")


if __name__ == "__main__":
    main()
