"""Put the CPU-trained distortion recogniser into the bundled zoo with its card (issue 18): the model `restorekit
analyze` runs by default. Trained here from scratch (the thesis's ImageNet-pretrained bases cannot be had).

    restorekit distortion-set classification BSD200 -o runs/recognition/fd_cls
    restorekit distortion-set basic BSD200 -o runs/recognition/fd_basic --versions 10
    restorekit distortion-set difficult BSD200 -o runs/recognition/fd_difficult --versions 10
    restorekit recognizer train configs/recognition/recognizer_fd_cpu.yaml --out runs/recognition/fd_cpu --resume
    restorekit recognizer eval --model runs/recognition/fd_cpu/final.safetensors --set runs/recognition/fd_cls \
        --set runs/recognition/fd_basic --set runs/recognition/fd_difficult --json runs/recognition/fd_cpu/scores.json
    .venv/bin/python scripts/publish_recognizer.py

The card's measurements are the scores file's figures, each with the command that reproduces it and the thesis's
figure where one exists (Table 6.1 fine-tuned ResNet-101 0.988; Table 6.2 Atrous VGG-16 SSD 0.919 / 0.906 / 0.873;
Table 6.3 basic -> difficult 0.717 / 0.467 / 0.109).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from restorekit.card import Measurement, read_card, this_machine
from restorekit.zoo import publish

ROOT = Path(__file__).resolve().parent.parent
NAME = "distortion_recognizer_fd"  # not the architecture's name: a registry name wins over a zoo name
PAPER = {("classification", "type_level_accuracy"): 0.988,
         ("basic", "mAP@0.5"): 0.919, ("basic", "mAP@0.75"): 0.906, ("basic", "mAP@0.9"): 0.873,
         ("difficult", "mAP@0.5"): 0.717, ("difficult", "mAP@0.75"): 0.467, ("difficult", "mAP@0.9"): 0.109}
METRICS = ("type_accuracy", "type_level_accuracy", "mAP@0.5", "mAP@0.75", "mAP@0.9", "level_accuracy@0.5")


def measurements(scores: dict, run: str) -> list[dict]:
    out = []
    for result in scores["results"]:
        command = (f"restorekit recognizer eval --model {NAME} --set {result['set']} --split {result['split']}")
        for metric in METRICS:
            if result.get(metric) is not None:
                out.append(Measurement(
                    dataset=f"{Path(result['set']).name} ({result['kind']}, {result['split']} split)", metric=metric,
                    value=round(result[metric], 4), n_images=result["n_images"], command=command,
                    paper=PAPER.get((result["kind"], metric)),
                    protocol={"sets": f"restorekit distortion-set {result['kind']} BSD200 (see the card's data)",
                              "map": "VOC all-point AP over the 8 types, greedy matching by score"
                              if metric.startswith("mAP") else None}).model_dump(exclude_none=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/recognition/fd_cpu")
    parser.add_argument("--folder", default=str(ROOT / "weights"))
    args = parser.parse_args()
    run = ROOT / args.run
    scores = json.loads((run / "scores.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    card = {
        "family": "recognizer",
        "license": "MIT",
        "description": "Distortion recogniser (thesis ch. 6): a fully-convolutional ResNet-style network labelling "
                       "every pixel with identity or one of the 8 Flickr-Distortion types x 3 levels; whole-image "
                       "classification averages the pixels, detection turns regions of one type into boxes. "
                       "Trained from scratch on this CPU (no ImageNet weights here; the thesis fine-tunes "
                       "ImageNet-pretrained VGG-16 / ResNet-101 and an SSD300).",
        "training": {**read_card(run / "final.json").training.model_dump(exclude_none=True),
                     "recipe": "recognition: per-pixel cross-entropy, 128 px crops, horizontal flips only, "
                               "Adam, lr /10 at 60% and 85%",
                     "hardware": this_machine(),
                     "data": "BSD200 (BSDS300 train, 200 images): classification set 224x224 centre crops x 24 "
                             "(8 types x 3 levels, split 60/20/20 by source), detection-basic 300x300 x 10 versions "
                             "(thesis 20; split 80/20 by source); the thesis's 804 Flickr images are not available",
                     "final_loss": log[-1]["loss"]},
        "measurements": measurements(scores, args.run),
    }
    path = publish(run / "final.safetensors", NAME, card, Path(args.folder))
    print(f"published {path}")


if __name__ == "__main__":
    main()
