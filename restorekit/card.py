"""The model card: one typed schema for the zoo, the trainer, `zoo import` and the web page.

A card sits beside its weights (`NAME.safetensors` + `NAME.json`) and says what the model is (architecture
and builder arguments), what it is for (task, level range or scales), where it came from (training recipe
or the released file it was converted from, with its license) and what it measured (results with their
protocol). It is validated when read and when written (pydantic, unknown keys refused), so a card that
loads is one the rest of the package can trust; a bad card is one line naming the file and the field.
"""

from __future__ import annotations

import json
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from restorekit.atomic import write_json
from restorekit.errors import ModelError
from restorekit.tasks import MODEL_TASKS

_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Training(BaseModel):
    """How the weights were made; the named keys are the ones tools read, a recipe may record more."""

    model_config = ConfigDict(extra="allow")

    recipe: str | None = None
    command: str | None = None
    config: str | None = None
    configs: list[str] | None = None
    data: str | None = None
    hardware: str | None = None
    steps: int | str | dict[str, int] | None = None  # per stage for staged recipes
    seed: int | None = None
    levels: list[str] | None = None  # the degradation specs trained on
    strategy: str | None = None
    ema: bool | None = None
    val_psnr: dict[str, float] | None = None


class Provenance(_Strict):
    """Where a converted released checkpoint came from (`restorekit zoo import`)."""

    source: str  # repository and path, or the file it was imported from
    license: str  # 'MIT', ..., or 'none stated'
    original_sha256: str | None = None
    original_file: str | None = None
    imported_with: str | None = None  # the command


def eval_command(model: str, dataset: str, task: str, *, scale: int | None = None, level: float | None = None,
                 crop: str | None = None, flags: str = "") -> str:
    """The `restorekit eval` command line that reproduces one card result (Result.from_eval / from_grid)."""
    return " ".join(part for part in (
        f"restorekit eval --model {model} --dataset {dataset} --task {task}",
        f"--scale {scale}" if scale else "", f"--level {level:g}" if level is not None else "",
        f"--crop-to {crop}" if crop else "", flags) if part)


class Result(_Strict):
    """One measured number with the protocol that produced it (what `restorekit eval` writes)."""

    dataset: str
    task: str
    psnr: float
    level: float | None = None
    scale: int | None = None
    strength: float | None = None
    ssim: float | None = None
    psnr_b: float | None = None
    n_images: int | None = None
    protocol: dict[str, Any] = Field(default_factory=dict)
    command: str | None = None
    paper: float | None = None  # the published figure under the same protocol, when there is one

    @classmethod
    def from_eval(cls, data: dict[str, Any], model: str, flags: str = "") -> Result:
        """A `restorekit eval --json` file's figures as a card result, with the command that reproduces them
        for the zoo name `model`: dataset, task, scale, level and crop from the file, `flags` (e.g. the --degrade
        the run used) appended as given."""
        dataset, protocol = Path(data["dataset"]).name, data.get("protocol") or {}
        scale, level, crop = data.get("scale"), data.get("level"), protocol.get("crop_to")
        command = eval_command(model, dataset, data["task"], scale=scale, level=level, crop=crop, flags=flags)
        return cls(dataset=dataset, task=data["task"], scale=scale, level=data.get("level"),
                   psnr=round(data["psnr"], 3), ssim=round(data["ssim"], 4) if data.get("ssim") is not None else None,
                   n_images=data.get("n_images"), protocol=protocol, command=command)

    @classmethod
    def from_grid(cls, grid: dict[str, Any], model: str, key: str | None = None, flags: str = "") -> list[Result]:
        """A `restorekit eval --levels --json` grid's rows for one model (`key`, default the only one) as card
        results, each with the single-level command that reproduces it for the zoo name `model`. An SR grid's
        x axis is the scale (`--levels 2,3,4`): its whole-number values are results at `--scale S`."""
        from restorekit.degrade.seeding import default_seed_mode

        rows = grid["results"][key] if key else next(iter(grid["results"].values()))
        dataset, task, protocol = Path(grid["dataset"]).name, grid["task"], grid.get("protocol") or {}
        results = []
        by_spec = grid.get("x_axis") == "degradation"  # an `eval --degrade SPEC ...` grid: each row its own spec
        for row in rows:
            level, scale = row.get("level"), None
            if grid.get("x_axis") == "scale" and level is not None and float(level).is_integer():
                level, scale = None, int(level)
            seeding = protocol.get("seed_mode")  # named in the command where the single eval would seed otherwise
            seed_flag = f"--seed-mode {seeding}" if seeding and seeding != default_seed_mode(
                row["spec"] if by_spec else None) else ""
            row_flags = " ".join(f for f in (flags, f"--degrade '{row['spec']}'" if by_spec else "", seed_flag) if f)
            command = eval_command(model, dataset, task, scale=scale, level=level, crop=protocol.get("crop_to"),
                                   flags=row_flags)
            results.append(cls(dataset=dataset, task=task, scale=scale, level=level, strength=row.get("strength"),
                               psnr=round(row["psnr"], 3),
                               ssim=round(row["ssim"], 4) if row.get("ssim") is not None else None,
                               psnr_b=round(row["psnr_b"], 3) if "psnr_b" in row else None,
                               n_images=row.get("n_images"),
                               protocol={**protocol, **row.get("protocol", {}), "degradation": row["spec"]},
                               command=command))
        return results


class Measurement(_Strict):
    """A measured figure other than a restoration PSNR (a recogniser's accuracy or mAP), with its protocol."""

    dataset: str
    metric: str  # e.g. 'type_accuracy', 'mAP@0.5'
    value: float
    n_images: int | None = None
    protocol: dict[str, Any] = Field(default_factory=dict)
    command: str | None = None
    paper: float | None = None


class ModelCard(_Strict):
    name: str
    architecture: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    family: str | None = None
    task: str
    description: str = ""
    levels: tuple[float, float] | None = None  # (start, end) the model covers, in `level_name` units
    level_name: str | None = None
    scales: list[int] | None = None
    grey: str | None = None  # how RGB test images become a 1-channel model's input ('y', 'luma')
    blind: bool = False
    # A specialist's one fixed degradation (a spec, e.g. 'blur:kind=disk,radius=4'): `--task` never chooses it
    # (a disk-blur model on Gaussian blur is no deblurrer); it runs by `--model NAME`, and `eval` degrades with it.
    degradation: str | None = None
    strength_curve: dict[str, Any] | None = None  # modulation.StrengthCurve.to_dict()
    file: str | None = None
    sha256: str | None = None
    dtype: str | None = None
    training: Training | None = None
    provenance: Provenance | None = None
    license: str | None = None
    paper: dict[str, float] | None = None
    results: list[Result] = Field(default_factory=list)
    measurements: list[Measurement] = Field(default_factory=list)
    restorekit_version: str | None = None

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if task not in MODEL_TASKS:
            raise ValueError(f"unknown task {task!r}; one of {', '.join(MODEL_TASKS)}")
        return task

    @field_validator("degradation")
    @classmethod
    def _valid_spec(cls, spec: str | None) -> str | None:
        if spec is not None:
            from restorekit.degrade import parse_spec
            from restorekit.errors import SpecError

            try:
                parse_spec(spec)  # a bad spec fails when the card is read, naming the field
            except SpecError as error:
                raise ValueError(str(error)) from None
        return spec

    @field_validator("name", "file")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not is_plain_name(value):
            raise ValueError(f"must be a plain file name, not a path ({value!r})")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, digest: str | None) -> str | None:
        """A malformed digest can never match: say so when the card is read, not as a 'mismatch' later."""
        if digest is not None and not _SHA256.fullmatch(digest.lower()):
            raise ValueError("must be 64 hexadecimal digits (the output of sha256sum)")
        return digest.lower() if digest is not None else None

    @model_validator(mode="before")
    @classmethod
    def _legacy_layout(cls, data: Any) -> Any:
        """Cards written before this schema kept training facts at the top level and spec strings in
        `levels`; read them into the one layout (and drop `supports_half`, now the descriptor's)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data.pop("supports_half", None)
        training = dict(data.get("training") or {})
        for key in ("steps", "seed", "ema", "strategy", "val_psnr", "config"):
            if key in data:
                training.setdefault(key, data.pop(key))
        levels = data.get("levels")
        if isinstance(levels, list) and any(isinstance(v, str) for v in levels):
            training.setdefault("levels", data.pop("levels"))
        if training:
            data["training"] = training
        return data

    # -- what callers ask of a card -----------------------------------------------------------------

    def level_range(self) -> tuple[float, float] | None:
        """The levels the model covers: `levels`, else its strength curve's span."""
        if self.levels is not None:
            return min(self.levels), max(self.levels)
        curve = self.strength_curve
        if curve and "start" in curve and "end" in curve:
            low, high = sorted((float(curve["start"]), float(curve["end"])))
            return low, high
        return None

    def card_scales(self) -> list[int]:
        """SR factors: `scales`, else the architecture's `scale` argument."""
        if self.scales:
            return list(self.scales)
        scale = self.arguments.get("scale")
        return [int(scale)] if scale and int(scale) > 1 else []

    def covers(self, level: float | None) -> bool:
        span = self.level_range()
        return level is None or span is None or span[0] - 1e-9 <= level <= span[1] + 1e-9

    def coverage(self) -> list[str]:
        """What the weights were made for, in one style for every listing: ['levels 15..75', 'x2/x4',
        'only SPEC'] (any may be absent); `describe` and `zoo list` / `zoo show` print it."""
        parts = []
        span = self.level_range()
        if span is not None:
            parts.append(f"levels {span[0]:g}..{span[1]:g}")
        if self.card_scales():
            parts.append("x" + "/x".join(str(s) for s in self.card_scales()))
        if self.degradation:
            parts.append(f"only {self.degradation}")
        return parts

    def describe(self) -> str:
        """'name (task, levels 15..75, x2/x4)': enough to choose between candidates in an error message."""
        return f"{self.name} ({', '.join([self.task, *self.coverage()])})"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def this_machine(shared_with: str | None = "other jobs", threads: int | None = 1) -> str:
    """A card's `training.hardware` for weights trained on the machine publishing them: cores, architecture,
    torch version, what shared the cores and the torch threads (a CPU recipe's timings depend on all four)."""
    parts = [f"{os.cpu_count()}-core CPU ({platform.machine()})" + (f", shared with {shared_with}" if shared_with else "")]
    parts.append(f"torch {metadata.version('torch')}")
    if threads is not None:
        parts.append("one torch thread" if threads == 1 else f"{threads} torch threads")
    return "; ".join(parts)


def is_plain_name(name: str) -> bool:
    """Zoo names become file names and weights sit beside their card: a path instead (`../x`, `/etc/x`)
    would let a card, or `zoo import --name`, reach outside the zoo folder."""
    return bool(name) and Path(name).name == name and name not in (".", "..") and "\\" not in name


def card_path(weights: str | Path) -> Path:
    """The card of `weights/NAME.safetensors` is `weights/NAME.json`."""
    return Path(weights).with_suffix(".json")


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "card"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_card(data: Any, source: str | Path = "model card") -> ModelCard:
    try:
        return ModelCard.model_validate(data)
    except ValidationError as err:
        raise ModelError(f"{source}: invalid model card ({_one_line(err)})") from None


def read_card(path: str | Path) -> ModelCard:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ModelError(f"{path}: unreadable model card ({err})") from None
    return parse_card(data, path)


def write_card(path: str | Path, card: ModelCard | dict) -> Path:
    """Validate and write atomically."""
    card = card if isinstance(card, ModelCard) else parse_card(card, path)
    return write_json(path, card.to_json())
