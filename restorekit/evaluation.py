"""Evaluate a model on a folder of clean images under an explicit, recorded protocol.

For each image: make the degraded input (the SR benchmark's modcrop + MATLAB bicubic downscale, or a
degradation spec seeded per image), run the model, and score PSNR/SSIM (and PSNR-B for JPEG) with the
task's metric convention. Every switch that changes a number lands in the result's `protocol`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from restorekit import __version__, io, metrics, ops
from restorekit.atomic import write_json
from restorekit.data.pairs import describe_unpaired, is_paired_folder, match_pairs, relative
from restorekit.errors import RestorekitError
from restorekit.infer import conditions_for, factor_for, run_ensemble, run_model
from restorekit.models import Model
from restorekit.tasks import EVAL_TASKS, TASKS

if TYPE_CHECKING:
    from restorekit.degrade.record import Degradation

# Metric convention per task (field-conventions 4.4), from the task registry: SR on Y with border = scale,
# JPEG and deraining on Y, everything else on RGB without a border crop; 'restore' (paired folders or an
# arbitrary --degrade spec) on RGB.
TASK_PROTOCOLS: dict[str, metrics.Protocol] = {
    name: metrics.Protocol(y_channel=name in TASKS and TASKS[name].y_channel) for name in EVAL_TASKS
}

# How SR inputs are made from the HR image (item 7 of issue 12): 'rgb-uint8' degrades the RGB image and
# rounds the LR to uint8 (the SelfExSR/EDSR convention, our default for colour models); 'y-float' takes
# the unrounded MATLAB Y of the HR image and bicubic-downscales it as floating point with no rounding (the
# VDSR / IDN / DnCNN-3 test scripts; the default for Y-only models).
SR_INPUTS = ("rgb-uint8", "y-float")

# The recorded degradation of a paired dataset (degraded/ + clean/): the files carry it, nothing is made.
GIVEN = "given (paired files)"

# Tasks whose results also hold DL-Net's l1 / l2 on [-1, 1] images (spec 1.7): `l1_pm1`, `l2_pm1`.
PM1_TASKS = ("inpaint", "interpolate")


@dataclass(frozen=True)
class EvalSetup:
    """Everything besides the model and images that decides the numbers."""

    task: str
    scale: int | float = 1  # SR: fractional for a continuous-scale model (x3.5: HR cropped to multiples of 7)
    level: float | None = None
    degrade: str | None = None  # a degradation spec; None: the task's canonical one
    protocol: metrics.Protocol = metrics.Protocol()
    crop_to: tuple[int, int] | None = None  # (long side, short side) top-left crop, e.g. BSD100's 480x320
    seed: int = 0
    seed_mode: str = "fixed"  # 'fixed': every image uses `seed` (KAIR's np.random.seed(0) per image)
    grey: str | None = None  # 'y' | 'luma': RGB test images become 1 channel before degradation (JPEG on Y)
    sr_input: str | None = None  # SR only, one of SR_INPUTS; None: 'rgb-uint8', or 'y-float' for Y-only models
    ensemble: bool = False  # average the model over the 8 flips/rotations (RED-Net's test-time trick)
    # the path a factor-conditioned model (MBN) runs: None = the task's factor (derain -> rain), 'auto' = every
    # path recurrently (R-MBN, the factor unknown)
    factor: str | None = None
    noise: str = "float"  # the canonical denoising input: degrade.spec.NOISE_PROTOCOLS (recorded in `degradation`)
    # A paired dataset gives the degraded inputs: nothing is synthesised, `level` is only what the user
    # states about the files (recorded, and the condition of a modulated / level-taking model).
    paired: bool = False

    def describe(self) -> dict:
        factor = {"factor": self.factor} if self.factor else {}  # only when named: earlier results keep their keys
        if self.paired:  # no seed, spec or SR input applies to given files
            return {**self.protocol.as_dict(), "ensemble": self.ensemble, "crop_to": self.crop_text(), "seed": None,
                    "seed_mode": None,
                    "grey": self.grey, "degradation": GIVEN, **factor}
        described = {
            **self.protocol.as_dict(),
            "ensemble": self.ensemble,
            "crop_to": self.crop_text(),
            "seed": self.seed,
            "seed_mode": self.seed_mode,
            "grey": self.grey,
            "degradation": self.degradation_spec(),
        }
        if self.sr_benchmark:
            described["sr_input"] = self.sr_input or "rgb-uint8"
        return {**described, **factor}

    @property
    def sr_benchmark(self) -> bool:
        """SR's benchmark inputs (MATLAB bicubic of the modcropped image): no --degrade and no blur level.
        A nonzero level is the task's blur width u (DL-Net's blurred SR): the canonical spec makes the input."""
        return self.task == "sr" and not self.degrade and not self.level

    def crop_text(self) -> str | None:
        return None if self.crop_to is None else f"{self.crop_to[0]}x{self.crop_to[1]}"

    def level_source(self) -> str | None:
        """'applied': inputs were degraded at `level`; 'stated': the user's word about paired files."""
        if self.level is None:
            return None
        return "stated" if self.paired else "applied"

    def degradation_spec(self) -> str | None:
        """The spec that makes the inputs; None for paired files (given) and for 'restore' without --degrade."""
        if self.paired:
            return None
        if self.degrade:
            return self.degrade
        if self.sr_benchmark and self.sr_input == "y-float":
            return f"y_unrounded+modcrop:{ops.scale_modulus(self.scale)}+matlab_bicubic_down:{self.scale}"
        if self.sr_benchmark:
            return f"modcrop:{ops.scale_modulus(self.scale)}+matlab_bicubic_down:{self.scale}+round_uint8"
        if self.task == "restore":
            return None
        from restorekit.degrade import canonical_spec

        return canonical_spec(self.task, self.level, self.scale, self.noise)


def default_setup(task: str, *, scale: int | None = None, level: float | None = None, **overrides) -> EvalSetup:
    """The task's standard protocol; SR's border crop defaults to the scale."""
    if task not in TASK_PROTOCOLS:
        raise RestorekitError(f"unknown task {task!r}; choose one of: {', '.join(TASK_PROTOCOLS)}")
    if task == "sr" and not scale:
        raise RestorekitError("task 'sr' needs --scale")
    protocol = TASK_PROTOCOLS[task]
    if task == "sr":
        protocol = replace(protocol, crop_border=math.ceil(scale))  # x3.5: border 4
    setup = EvalSetup(task=task, scale=ops.as_scale(scale or 1), level=level, protocol=protocol)
    return replace(setup, **{k: v for k, v in overrides.items() if v is not None})


def parse_crop(text: str | None) -> tuple[int, int] | None:
    """'480x320' -> (480, 320): the long and short side of a top-left crop, whatever the orientation."""
    if not text:
        return None
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise RestorekitError(f"--crop-to {text!r}: expected WIDTHxHEIGHT such as 480x320") from err
    return max(a, b), min(a, b)


def crop_to(image: torch.Tensor, long_short: tuple[int, int] | None) -> torch.Tensor:
    if long_short is None:
        return image
    long_side, short_side = long_short
    height, width = image.shape[-2:]
    return ops.crop_top_left(image, *((long_side, short_side) if height > width else (short_side, long_side)))


def to_grey(image: torch.Tensor, how: str, rounding: bool = True) -> torch.Tensor:
    """1xHxW from an RGB CHW image in [0, 1], rounded to 1/255 like an 8-bit file unless `rounding` is
    False: 'y' is MATLAB rgb2ycbcr's Y (studio swing; the JPEG benchmarks compress this plane), 'luma'
    full-range BT.601."""
    if how not in ops.GREY_FORMULAS:
        raise RestorekitError(f"unknown grey conversion {how!r}; choose one of {', '.join(ops.GREY_FORMULAS)}")
    if image.shape[-3] != 3:
        return image
    luma = ops.rgb2y(image.double(), ops.GREY_FORMULAS[how], rounding=rounding)
    return luma.clamp(0, 1).float().unsqueeze(-3)


def setup_for_model(setup: EvalSetup, model: Model) -> EvalSetup:
    """A grey model (1 input channel) on RGB images gets the conversion it was trained with (its card's
    `grey`, default 'y', the benchmarks' Y channel) unless the setup names one; a grey SR model gets the
    Y-float SR input of the VDSR/IDN test scripts unless the setup names an SR input (which is a Y plane).
    A specialist's card degradation (one fixed blur kernel) is the input when the setup names neither a
    degradation nor a level, seeded by image name as an explicit `eval --degrade` is."""
    from restorekit.degrade.seeding import default_seed_mode

    card = model.card
    if card is not None and card.degradation and card.task == setup.task and not setup.degrade \
            and setup.level is None and not setup.paired:
        setup = replace(setup, degrade=card.degradation, seed_mode=default_seed_mode(card.degradation))
    if setup.sr_input == "y-float" and setup.grey is None:
        setup = replace(setup, grey="y")
    if model.info.in_channels != 1:
        return setup
    grey = setup.grey or (card.grey if card is not None and card.grey else "y")
    sr_input = setup.sr_input or ("y-float" if setup.sr_benchmark else None)
    return replace(setup, grey=grey, sr_input=sr_input)


def sr_pair(clean: torch.Tensor, setup: EvalSetup) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) of the SR benchmark: modcrop, MATLAB-bicubic downscale; LR rounded to uint8 ('rgb-uint8')
    or, for 'y-float', the unrounded Y plane downscaled as floating point with no rounding at all."""
    if setup.sr_input == "y-float":
        target = ops.modcrop(to_grey(clean, setup.grey, rounding=False), ops.scale_modulus(setup.scale))
        return ops.downscale(target.double(), setup.scale).float(), target
    target = ops.modcrop(to_grey(clean, setup.grey) if setup.grey else clean, ops.scale_modulus(setup.scale))
    return ops.quantize(ops.downscale(target.double(), setup.scale)).float(), target


def make_input(clean: torch.Tensor, name: str, setup: EvalSetup) -> tuple[torch.Tensor, torch.Tensor]:
    """(degraded input, ground truth) for one clean CHW image under `setup`."""
    degraded, target, _ = make_example(clean, name, setup)
    return degraded, target


def make_example(clean: torch.Tensor, name: str, setup: EvalSetup, with_record: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor, Degradation | None]:
    """`make_input` plus, with `with_record`, the degradation record of the input (a model taking the
    `record`, DL-Net, is called with it); the SR benchmark's bicubic downscale is recorded as
    `down:scale=S,quantize=false`, the same MATLAB bicubic."""
    if setup.sr_input not in (None, *SR_INPUTS):
        raise RestorekitError(f"unknown SR input {setup.sr_input!r}; choose one of {', '.join(SR_INPUTS)}")
    from restorekit.degrade import parse_spec
    from restorekit.degrade.seeding import seed_for

    if setup.sr_benchmark:
        degraded, target = sr_pair(clean, setup)
        record = parse_spec(f"down:scale={setup.scale},quantize=false").apply_one(target, 0)[1] if with_record else None
        return degraded, target, record
    if setup.grey:
        clean = to_grey(clean, setup.grey)
    spec = setup.degradation_spec()
    if spec is None:
        raise RestorekitError("task 'restore' needs --degrade SPEC or a paired dataset (degraded/ and clean/)")
    target = ops.modcrop(clean, setup.scale) if setup.scale > 1 else clean
    seed = seed_for(setup.seed_mode, setup.seed, name)
    degraded, record = parse_spec(spec).apply_one(target, seed)
    return degraded, target, record if with_record else None


def sidecar_record(degraded: Path) -> Degradation | None:
    """The degradation record saved beside a degraded file (`restorekit degrade`'s NAME.json sidecar, or a
    bare record), None when there is none: how a paired test set hands DL-Net each input's record."""
    path = degraded.with_suffix(".json")
    if not path.is_file():
        return None
    from restorekit.degrade.record import Degradation

    try:
        return Degradation.from_json(path.read_text())
    except RestorekitError as err:
        raise RestorekitError(f"{path}: {err}") from None


def for_dataset(setup: EvalSetup, dataset: Path) -> EvalSetup:
    """`setup` marked paired when `dataset` holds degraded/ + clean/; a spec to synthesise inputs with
    contradicts given inputs, so --degrade on pairs is refused rather than ignored."""
    if not is_paired_folder(dataset):
        return setup
    if setup.degrade:
        raise RestorekitError(f"{dataset}: a paired dataset (degraded/ + clean/) gives the degraded inputs; "
                              f"--degrade {setup.degrade!r} would make new ones: drop it or use a clean folder")
    return replace(setup, paired=True)


Item = tuple[str, Path, Path | None]  # (name, clean path, degraded path; None: synthesised from the clean)


def load_items(folder: Path, *, skip_unpaired: bool = False) -> tuple[list[Item], list[Path]]:
    """The dataset's items and, for a paired set with `skip_unpaired`, the files left without a partner."""
    if is_paired_folder(folder):
        pairing = match_pairs(folder, skip_unpaired=skip_unpaired,
                              hint="--skip-unpaired skips such files with a warning")
        return [(p.name, p.clean, p.degraded) for p in pairing.pairs], pairing.unpaired
    return [(p.name, p, None) for p in io.list_images(folder)], []


def dataset_items(folder: Path, *, skip_unpaired: bool = False) -> list[Item]:
    """(name, clean path, degraded path or None). A folder holding degraded/ and clean/ is a paired set,
    matched by name without extension (restorekit.data.pairs: unpaired or ambiguous files are errors)."""
    return load_items(folder, skip_unpaired=skip_unpaired)[0]


def unpaired_warning(dataset: Path | str, unpaired: list[str]) -> str:
    """The one line the CLI prints for the files that --skip-unpaired left out (a result's 'unpaired')."""
    return f"{dataset}: skipped {len(unpaired)} file(s) without a partner: {describe_unpaired(unpaired)}"


def evaluate(
    model: Model,
    dataset: Path,
    setup: EvalSetup,
    *,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    progress=None,
    strength: float | None = None,
    skip_unpaired: bool = False,
    no_reference: tuple[str, ...] = (),
) -> dict:
    """Score `model` on every image of `dataset`; returns the JSON-ready result (means and per image).

    Conditions are call arguments: a modulated model (AdaFM) runs at `strength`, else at its card's
    lambda(level); a model taking the level (FFDNet's noise map) gets it; a model taking the scale per call
    (VDSR, DnCNN-3) gets the setup's scale. A paired dataset is scored as given: `level` is then only
    stated (recorded with level_source 'stated'; still the model's condition), never applied. Its files
    without a partner are an error, or with `skip_unpaired` left out and listed under 'unpaired'.
    `no_reference` adds measures of the output alone (`metrics.NO_REFERENCE`, e.g. PIQE for GAN models).
    """
    setup = for_dataset(setup, dataset)
    items, unpaired = load_items(dataset, skip_unpaired=skip_unpaired)
    items = items[:limit]
    if not items:
        raise RestorekitError(f"{dataset}: no images found" + (" with a partner" if unpaired else ""))
    setup = setup_for_model(setup, model)
    scale = setup.scale if "scale" in model.info.inputs else None
    factor = factor_for(model, setup.task, setup.factor)
    conditions = conditions_for(model, level=setup.level, strength=strength, scale=scale, factor=factor)
    takes_record = "record" in model.info.inputs  # DL-Net: each image's own degradation record
    if setup.ensemble and takes_record:
        raise RestorekitError(f"model {model.name!r} takes its input's degradation record, which a rotated input "
                              "would contradict: evaluate it without --ensemble")
    rows = []
    converted = False  # whether any colour image was turned grey (else `grey` does not apply)
    started = time.perf_counter()
    for name, clean_path, degraded_path in items:
        clean = crop_to(io.read_image(clean_path)[0], setup.crop_to)
        converted = converted or bool(setup.grey and clean.shape[0] == 3)
        if degraded_path is not None:
            degraded = crop_to(io.read_image(degraded_path)[0], setup.crop_to)
            if setup.grey:
                clean, degraded = to_grey(clean, setup.grey), to_grey(degraded, setup.grey)
            # the record saved beside the degraded file, if any (a model that needs one and finds none says so)
            record = sidecar_record(degraded_path) if takes_record else None
        else:
            degraded, clean, record = make_example(clean, name, setup, with_record=takes_record)
        def restore(image: torch.Tensor, record=record) -> torch.Tensor:
            return run_model(model, image, device, **conditions, **({"record": record} if takes_record else {}))

        output = run_ensemble(restore, degraded) if setup.ensemble else restore(degraded)
        if output.shape != clean.shape:
            raise RestorekitError(
                f"{clean_path}: model output {tuple(output.shape)} does not match ground truth {tuple(clean.shape)}"
            )
        row = {
            "name": name,
            "psnr": float(metrics.psnr_batch(output, clean, setup.protocol)),
            "ssim": float(metrics.ssim_batch(output, clean, setup.protocol)),
        }
        if setup.task == "jpeg":
            row["psnr_b"] = float(metrics.psnr_b_batch(output, clean, replace(setup.protocol, crop_border=0)))
        if setup.task in PM1_TASKS:  # on the images the PSNR compares (quantised under the protocol)
            shown, truth = (metrics.prepare(x, setup.protocol) / 255.0 for x in (output, clean))
            row["l1_pm1"], row["l2_pm1"] = metrics.l1_pm1(shown, truth), metrics.l2_pm1(shown, truth)
        for measure in no_reference:  # the whole RGB output, as a viewer sees it
            row[measure] = metrics.no_reference(measure, output)
        rows.append(row)
        if progress is not None:
            progress(name)
    result = {
        "model": model.name,
        "dataset": str(dataset),
        "task": setup.task,
        "scale": setup.scale,
        "level": setup.level,
        "level_source": setup.level_source(),
        "strength": conditions.get("strength"),
        **({"factor": factor or "auto"} if "factor" in model.info.inputs else {}),  # the path MBN ran
        "n_images": len(rows),
        "psnr": sum(r["psnr"] for r in rows) / len(rows),
        "ssim": sum(r["ssim"] for r in rows) / len(rows),
        "protocol": {**setup.describe(), "grey": setup.grey if converted else None},
        "images": rows,
        "restorekit_version": __version__,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if setup.paired:
        result["unpaired"] = relative(dataset, unpaired)
    if setup.task == "jpeg":
        result["psnr_b"] = sum(r["psnr_b"] for r in rows) / len(rows)
    for key in ("l1_pm1", "l2_pm1") if setup.task in PM1_TASKS else ():
        result[key] = sum(r[key] for r in rows) / len(rows)
    for measure in no_reference:
        result[measure] = sum(r[measure] for r in rows) / len(rows)
    return result


def file_stamp(path: Path) -> list[float] | None:
    """[size, mtime] of a weights file (None when absent): what a cached result is valid for."""
    path = Path(path)
    return [path.stat().st_size, path.stat().st_mtime] if path.is_file() else None


def evaluate_cached(path: Path, key: dict, load: Callable[[], Model], dataset: Path, setup: EvalSetup,
                    limit: int | None = None) -> dict:
    """`evaluate(load(), dataset, setup)`, kept as JSON in `path` and reused while `key` (what names the model:
    its source, arguments and `file_stamp`s), the protocol and the limit are the same: a long table resumes
    where it stopped, and processes scoring different rows fill one cache."""
    setup = for_dataset(setup, dataset)  # the setup evaluate runs: paired sets key as given files
    key = json.loads(json.dumps({**key, "setup": setup.describe(), "limit": limit}))
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached
    result = evaluate(load(), dataset, setup, limit=limit)
    write_json(path, {**result, "key": key})  # an eval --json result with its key
    return result


# ------------------------------------------------------------------------ level grids (signature figure)


@dataclass(frozen=True)
class GridPoint:
    """One x position of a level grid: a level of the task's canonical degradation, a spec, or (paired
    datasets) the given files."""

    label: str
    level: float | None
    setup: EvalSetup


def parse_levels(text: str) -> list[float]:
    """'10,30,50,70' -> [10.0, 30.0, 50.0, 70.0] (commas and/or spaces)."""
    try:
        levels = [float(v) for v in text.replace(",", " ").split()]
    except ValueError as err:
        raise RestorekitError(f"--levels {text!r}: expected numbers such as 10,30,50,70") from err
    if not levels:
        raise RestorekitError("--levels: give at least one level, e.g. 10,30,50,70")
    return levels


def grid_points(base: EvalSetup, levels: list[float] | None = None, specs: list[str] | None = None) -> list[GridPoint]:
    """The x axis: one point per level (SR: per scale) or per degradation spec, sharing `base`'s protocol;
    a paired `base` (see for_dataset) has one point, its given files: levels and specs would make inputs."""
    if base.paired:
        if levels or specs:
            raise RestorekitError("a paired dataset (degraded/ + clean/) gives the degraded inputs; --levels and "
                                  "--degrade would make new ones: compare models on it without them")
        return [GridPoint(GIVEN, None, base)]
    points = []
    for level in levels or []:
        if base.task == "sr":
            scale = ops.as_scale(level)
            protocol = replace(base.protocol, crop_border=math.ceil(scale)) \
                if base.protocol.crop_border == math.ceil(base.scale) else base.protocol
            points.append(GridPoint(f"x{scale}", level, replace(base, scale=scale, protocol=protocol)))
        else:
            points.append(GridPoint(f"{level:g}", level, replace(base, level=level, degrade=None)))
    for spec in specs or []:
        points.append(GridPoint(spec, None, replace(base, degrade=spec)))
    return points


def evaluate_grid(
    models: dict[str, Model | Callable[[int], Model]],
    dataset: Path,
    points: list[GridPoint],
    *,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    progress=None,
    strength: float | None = None,
    skip_unpaired: bool = False,
) -> dict:
    """Score every model at every grid point; `models` maps a label to a `Model`, or to a callable
    `scale -> Model` for SR grids over scales. Returns the JSON-ready grid with every run inside."""
    runs, unpaired = {}, None
    for label, model in models.items():
        rows = []
        for point in points:
            module = model if isinstance(model, Model) else model(point.setup.scale)
            result = evaluate(module, dataset, point.setup, device=device, limit=limit, strength=strength,
                              skip_unpaired=skip_unpaired)
            unpaired = result.get("unpaired")
            row = {"x": point.label, "level": point.level, "spec": result["protocol"]["degradation"],
                   "strength": result["strength"],
                   "psnr": result["psnr"], "ssim": result["ssim"], "n_images": result["n_images"],
                   "protocol": {k: v for k, v in result["protocol"].items() if k != "degradation"},
                   "images": result["images"]}
            if "psnr_b" in result:
                row["psnr_b"] = result["psnr_b"]
            rows.append(row)
            if progress is not None:
                progress(label, point.label)
        runs[label] = rows
    first = for_dataset(points[0].setup, dataset)
    grid = {
        "kind": "level_grid",
        "dataset": str(dataset),
        "task": first.task,
        "x_axis": "scale" if first.task == "sr" and points[0].level is not None else
                  ("level" if points[0].level is not None else "degradation"),
        "x": [p.label for p in points],
        "models": list(models),
        "results": runs,
        "protocol": common_protocol(runs),
        "restorekit_version": __version__,
    }
    if unpaired is not None:
        grid["unpaired"] = unpaired
    return grid


def common_protocol(runs: dict[str, list[dict]]) -> dict:
    """The protocol items every row of a grid shares; an item that changes along the axis (SR's border crop,
    ceil(scale)) is left to the rows, which each carry their whole protocol."""
    rows = [row["protocol"] for model_rows in runs.values() for row in model_rows]
    return {k: v for k, v in rows[0].items() if all(row.get(k) == v for row in rows)}


def grid_markdown(grid: dict) -> str:
    """PSNR (and SSIM) tables, models as rows and levels as columns, as in the papers."""
    axis = grid["x_axis"]
    head = f"| model \\ {axis} | " + " | ".join(grid["x"]) + " |"
    rule = "|---|" + "---:|" * len(grid["x"])
    rows = next(iter(grid["results"].values()))
    varying = [k for k in rows[0].get("protocol", {}) if k not in grid["protocol"]]
    per_column = [f"{k} by column: " + ", ".join(str(row["protocol"][k]) for row in rows) for k in varying]
    lines = [f"Dataset `{Path(grid['dataset']).name}`, task `{grid['task']}`; protocol: "
             + ", ".join([*(f"{k}={v}" for k, v in grid["protocol"].items()), *per_column]), ""]
    for metric, fmt in (("psnr", "{:.2f}"), ("ssim", "{:.4f}")):
        lines += [f"**{metric.upper()}**", "", head, rule]
        for model in grid["models"]:
            cells = [fmt.format(row[metric]) for row in grid["results"][model]]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
