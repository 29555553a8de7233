"""Training and scoring the distortion recogniser (thesis ch. 6; issue 18 item 2) on the sets that
`restorekit distortion-set` writes (labels.json + images/).

One config (configs/recognition/*.yaml) names the sets, the model and the schedule. Every step draws, for each
batch item, a set (uniformly), a training image of it, a random crop and a horizontal flip (the thesis's only
augmentation: rotations and scaling would change the distortions' own statistics), and minimises the per-pixel
cross-entropy against the image's class map (`recognition.label_map`): a whole-image distortion labels every
pixel, a detection image its boxes and `identity` elsewhere. Adam, the learning rate divided by 10 at the
milestones (fractions of the steps); checkpoints every `checkpoint_every` steps (`--resume` continues);
OUT/final.safetensors + OUT/final.json (a model card with the scores of `evaluate` on each set's test split).

Scoring (`evaluate`), on a set's test split at full size:
* classification set: type accuracy (8 classes) and type x level accuracy (24 classes) of `recognition.classify`
  (the thesis's Table 6.1 does not say which of the two it reports);
* detection sets: VOC mAP at IoU 0.5 / 0.75 / 0.9 over the 8 types of `recognition.find_distortions`
  (Tables 6.2-6.3), and the level accuracy of the regions matched at IoU 0.5.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from restorekit.errors import RestorekitError
from restorekit.io import to_tensor

SET_KINDS = ("classification", "basic", "difficult")
IOUS = (0.5, 0.75, 0.9)


@dataclass
class RecognitionConfig:
    """One experiment. Paths are relative to the working directory."""

    name: str
    sets: list[str]  # folders written by `restorekit distortion-set` (their train split is used)
    model_args: dict = field(default_factory=dict)  # distortion_recognizer arguments
    pretrained: str | None = None  # a user's weights file to start from (e.g. a converted ImageNet backbone)
    seed: int = 0
    crop: int = 128
    batch_size: int = 16
    steps: int = 1500
    lr: float = 1e-3
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.6, 0.85)  # fractions of `steps` where the lr is divided by 10
    checkpoint_every: int = 250
    log_every: int = 50
    threads: int = 1

    @classmethod
    def load(cls, path: str | Path) -> RecognitionConfig:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise RestorekitError(f"{path}: cannot read the config ({getattr(err, 'strerror', None) or err})") from None
        if not isinstance(data, dict):
            raise RestorekitError(f"{path}: a recognition config is a mapping of keys")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "name" not in data or "sets" not in data:
            raise RestorekitError(f"{path}: unknown key(s) {unknown} or missing name/sets; keys: {', '.join(known)}")
        return cls(**data)


@dataclass
class LabelledSet:
    """The images of one split of one set, in memory as uint8 (H, W, 3), with their class maps."""

    kind: str
    folder: Path
    items: list[dict]

    @classmethod
    def open(cls, folder: str | Path, split: str) -> LabelledSet:
        folder = Path(folder)
        try:
            labels = json.loads((folder / "labels.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RestorekitError(f"{folder}: no readable labels.json (write the set with `restorekit "
                                  f"distortion-set`): {getattr(err, 'strerror', None) or err}") from None
        items = [item for item in labels["items"] if item["split"] == split]
        if not items:
            raise RestorekitError(f"{folder}: no {split!r} images in labels.json")
        return cls(labels["kind"], folder, items)

    def image(self, index: int) -> np.ndarray:
        from restorekit.data.sources import read_uint8

        return read_uint8(self.folder / self.items[index]["file"], channels=3)

    def labels(self, index: int, height: int, width: int) -> torch.Tensor:
        from restorekit.recognition import label_map

        return label_map(height, width, self.items[index]["distortions"])


def sample_batch(sets: list[tuple[list[np.ndarray], list[torch.Tensor]]], rng: np.random.Generator, batch: int,
                 crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` random crops (set, image, position, flip drawn by `rng`) and their class maps."""
    images, targets = [], []
    for _ in range(batch):
        pictures, maps = sets[int(rng.integers(len(sets)))]
        index = int(rng.integers(len(pictures)))
        picture, labels = pictures[index], maps[index]
        top = int(rng.integers(picture.shape[0] - crop + 1))
        left = int(rng.integers(picture.shape[1] - crop + 1))
        image = to_tensor(picture[top:top + crop, left:left + crop])
        target = labels[top:top + crop, left:left + crop]
        if rng.random() < 0.5:
            image, target = image.flip(-1), target.flip(-1)
        images.append(image)
        targets.append(target)
    return torch.stack(images), torch.stack(targets).long()


def _load_sets(cfg: RecognitionConfig) -> list[tuple[list[np.ndarray], list[torch.Tensor]]]:
    loaded = []
    for folder in cfg.sets:
        labelled = LabelledSet.open(folder, "train")
        pictures = [labelled.image(i) for i in range(len(labelled.items))]
        maps = [labelled.labels(i, *p.shape[:2]).to(torch.uint8) for i, p in enumerate(pictures)]  # 25 classes
        small = [labelled.items[i]["file"] for i, p in enumerate(pictures) if min(p.shape[:2]) < cfg.crop]
        if small:
            raise RestorekitError(f"{folder}: {len(small)} training images are smaller than crop {cfg.crop} "
                                  f"(e.g. {small[0]})")
        loaded.append((pictures, maps))
    return loaded


def train(cfg: RecognitionConfig, out: Path, resume: bool = False, config_path: str | None = None,
          on_log=None) -> Path:
    """Train (or continue) one recogniser; returns OUT/final.safetensors."""
    from restorekit import models
    from restorekit.recognition import CLASSES
    from restorekit.train.checkpoint import checkpoint_path, load_latest_good, prune, save_checkpoint
    from restorekit.zoo import read_weights

    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = models.build("distortion_recognizer", **{"classes": len(CLASSES), **cfg.model_args})
    module = model.module
    if cfg.pretrained:
        missing = module.load_state_dict(read_weights(cfg.pretrained), strict=False)
        print(f"restorekit: started from {cfg.pretrained} (not in it: {len(missing.missing_keys)} tensors)")
    optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    milestones = [int(m * cfg.steps) for m in cfg.milestones]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    step, rng = 0, np.random.default_rng(cfg.seed)
    found = load_latest_good(out) if resume else None
    if found is not None:
        state, path = found
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, rng.bit_generator.state = state["step"], json.loads(state["rng"])
        print(f"restorekit: resuming from {path} (step {step})")
    sets = _load_sets(cfg)
    module.train()
    log, started, losses = out / "log.jsonl", time.perf_counter(), []
    while step < cfg.steps:
        images, targets = sample_batch(sets, rng, cfg.batch_size, cfg.crop)
        loss = F.cross_entropy(module(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        losses.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            entry = {"step": step, "loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0],
                     "it_per_s": round(len(losses) / (time.perf_counter() - started), 3)}
            with open(log, "a") as handle:
                handle.write(json.dumps(entry) + "\n")
            if on_log:
                on_log(entry)
            started, losses = time.perf_counter(), []
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            save_checkpoint({"model": module.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "step": step,
                             "rng": json.dumps(rng.bit_generator.state)}, checkpoint_path(out, step))
            prune(out, 2)
    module.eval()
    return _save_final(cfg, out, model, config_path)


def _save_final(cfg: RecognitionConfig, out: Path, model, config_path: str | None) -> Path:
    from restorekit.card import ModelCard, Training, this_machine
    from restorekit.train.trainer import save_final

    command = f"restorekit recognizer train {config_path or 'CONFIG'} --out {out} --resume"
    card = ModelCard(
        name=out.name, architecture="distortion_recognizer", arguments=dict(model.info.arguments), task="analyze",
        description="Distortion recogniser (thesis ch. 6): per-pixel type x level of the 8 Flickr-Distortion types",
        training=Training(recipe="recognition", command=command, config=config_path, steps=cfg.steps, seed=cfg.seed,
                          data=", ".join(cfg.sets), hardware=this_machine(None, cfg.threads),
                          schedule=asdict(cfg)))
    return save_final(out, model.module, card)


# ---------------------------------------------------------------------------------------------- scoring


def evaluate(model, folder: str | Path, split: str = "test", limit: int | None = None) -> dict:
    """The set's scores on `split` (see the module docstring)."""
    from restorekit.io import to_tensor
    from restorekit.recognition import classify, find_distortions, recognise

    labelled = LabelledSet.open(folder, split)
    count = min(len(labelled.items), limit or len(labelled.items))
    result: dict = {"set": str(folder), "kind": labelled.kind, "split": split, "n_images": count}
    if labelled.kind == "classification":
        right_type = right_both = 0
        for index in range(count):
            image = to_tensor(labelled.image(index))
            guess = classify(recognise(model, image))
            truth = labelled.items[index]["distortions"][0]
            right_type += guess[0] == truth["type"]
            right_both += guess == (truth["type"], truth["level_index"])
        return {**result, "type_accuracy": right_type / count, "type_level_accuracy": right_both / count}
    predictions, truths, found_levels = [], [], []
    for index in range(count):
        image = to_tensor(labelled.image(index))
        found = find_distortions(recognise(model, image))
        predictions.append([(f.type, f.score, f.box) for f in found])
        truths.append([(d["type"], tuple(d["box"])) for d in labelled.items[index]["distortions"]])
        found_levels.append((found, labelled.items[index]["distortions"]))
    from restorekit.metrics import mean_average_precision

    for iou in IOUS:
        per_class = mean_average_precision(predictions, truths, iou)
        result[f"mAP@{iou:g}"] = per_class.pop("mAP")
        result[f"AP@{iou:g}"] = per_class
    result["level_accuracy@0.5"] = _level_accuracy(found_levels)
    return result


def _level_accuracy(pairs: list) -> float | None:
    """Of the true boxes found at IoU >= 0.5 with the right type, the fraction whose level (nearest of 3) is right."""
    from restorekit.degrade.distortions import distortion
    from restorekit.metrics import box_iou
    from restorekit.recognition import level_index_of

    right = total = 0
    for found, truths in pairs:
        for truth in truths:
            matches = [f for f in found if f.type == truth["type"] and box_iou(f.box, tuple(truth["box"])) >= 0.5]
            if matches:
                total += 1
                right += round(matches[0].level_index) == level_index_of(distortion(truth["type"]), truth["level"])
    return right / total if total else None
