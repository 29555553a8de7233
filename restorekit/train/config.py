"""Training configs: BasicSR-like YAML, one file per experiment, every key declared here with its default.

Users' complaint about toolbox configs is that they are unclear: keys come from registries, defaults hide
in code, typos are ignored. Here the schema is a tree of pydantic models (`Config`) with `extra="forbid"`
that the loader, the error messages and docs/training.md (`reference_markdown`) all read. Loading is strict:

* an unknown key fails, naming the file, the dotted key and the closest known key;
* a value of the wrong type fails, naming the file, the key, the expected type and the value;
* `--set key=value` overrides (values parsed as YAML; `stages.1.steps=5` indexes lists) are checked the
  same way and named in the message;
* task names come from `restorekit.tasks`, loss names from the loss registry (`register_loss` included);
* the semantic checks that need the outside world (dataset folders exist, degradation specs parse,
  the model builds, freeze patterns match) run in `restorekit.train.trainer.prepare`, before the first step.

Every error is one line, `FILE: dotted.key: what is wrong`. Numbers written like `1e-4` are accepted for
float keys (PyYAML reads them as strings: a classic trap).
"""

from __future__ import annotations

import copy
import difflib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined

from restorekit.errors import ConfigError
from restorekit.ops import GREY_FORMULAS
from restorekit.tasks import EVAL_TASKS

# ------------------------------------------------------------------------------------ value types

# Plain pydantic types; `_message` words their errors ("expected an integer, got 'big' (str)").
Int, Float, Bool, Str, Mapping = int, FiniteFloat, StrictBool, StrictStr, dict
Strs, Ints, Floats = list[StrictStr], list[int], list[FiniteFloat]
OptInt, OptFloat, OptStr = int | None, FiniteFloat | None, StrictStr | None
OptStrs, OptInts, OptFloats = list[StrictStr] | None, list[int] | None, list[FiniteFloat] | None


def _fail(message: str, **context: Any) -> PydanticCustomError:
    return PydanticCustomError("restorekit", message, context)


class Section(BaseModel):
    """A config section: unknown keys refused, values checked against `choices`, null means {}."""

    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        return {} if data is None else data

    @field_validator("*", mode="after")
    @classmethod
    def _one_of(cls, value: Any, info: ValidationInfo) -> Any:
        choices = choices_of(cls.model_fields[info.field_name])
        if choices and value is not None and value not in choices:
            raise _fail("{value} is not one of: {options}", value=repr(value), options=", ".join(map(str, choices)))
        return value

    def to_plain(self) -> dict:
        """Plain YAML-able data (levels and loss terms in their normalised mapping form)."""
        return self.model_dump(mode="python")


def key(default: Any, doc: str, choices: tuple = ()) -> Any:
    """A config key: default (`...` = required), the doc line docs/training.md shows, allowed values."""
    extra = {"choices": list(choices)} if choices else None
    if isinstance(default, (list, dict)):
        return Field(default_factory=lambda: copy.deepcopy(default), description=doc, json_schema_extra=extra)
    return Field(default, description=doc, json_schema_extra=extra)


def choices_of(info: FieldInfo) -> tuple:
    extra = info.json_schema_extra
    return tuple(extra.get("choices", ())) if isinstance(extra, dict) else ()


class LevelEntry(Section):
    """One training/validation level: a degradation spec, optionally with its own images and patch size.
    A bare string is its spec; null is a paired folder's level (the folder provides the inputs)."""

    name: OptStr = None
    spec: OptStr = None
    folder: OptStr = None
    patch: OptInt = None

    @model_validator(mode="before")
    @classmethod
    def _spec_only(cls, data: Any) -> Any:
        return {"spec": data} if data is None or isinstance(data, str) else data


def _level_list(value: Any) -> Any:
    """The mapping form {name: spec or {spec, folder, patch}} as a list with names; at least one level."""
    if isinstance(value, dict):
        value = [{**(v if isinstance(v, dict) else {"spec": v}), "name": str(k)} for k, v in value.items()]
    if isinstance(value, list) and not value:
        raise _fail("needs at least one level")
    if value is not None and not isinstance(value, list):
        raise _fail("expected a list or mapping of degradation specs, got {value}", value=repr(value))
    return value


def _named(levels: list[LevelEntry] | None) -> list[LevelEntry] | None:
    for i, level in enumerate(levels or []):
        level.name = level.name or level.spec or f"level{i}"
    return levels


class LossTerm(Section):
    type: StrictStr
    weight: FiniteFloat = 1.0
    weights: OptStr = None  # a loss holding a network (vgg54): its weights file
    random_init: StrictBool = False  # ... or, in tests only, a seeded random network

    @field_validator("type")
    @classmethod
    def _registered(cls, name: str) -> str:
        """Loss names come from the one registry in losses.py (`register_loss` included)."""
        from restorekit.train.losses import loss_names

        if name not in loss_names():
            raise _fail("unknown loss {name}; choose one of: {names}", name=repr(name), names=", ".join(loss_names()))
        return name

    @model_validator(mode="after")
    def _network_options(self) -> LossTerm:
        """`weights` / `random_init` belong to losses that hold a network, which need exactly one of them."""
        from restorekit.train.losses import holds_network

        if not holds_network(self.type):
            if self.weights is not None or self.random_init:
                raise _fail("loss {name} takes no weights or random_init", name=repr(self.type), where="weights")
        elif self.weights is not None and self.random_init:
            raise _fail("give either weights or random_init (tests only), not both", where="random_init")
        elif self.weights is None and not self.random_init:
            raise _fail("loss {name} needs its network's weights file (for vgg54: torchvision VGG-19 names, "
                        "features.N.weight; see docs/training.md, Losses)", name=repr(self.type), where="weights")
        return self


def _loss_list(value: Any) -> Any:
    return [{"type": value}] if isinstance(value, str) else value


def _recipe(value: str) -> str:
    """Recipe names come from the recipe registry (`register_recipe`), like loss names from the losses'."""
    from restorekit.train.recipes import recipe_names

    if value not in recipe_names():
        raise _fail("{value} is not one of: {options}", value=repr(value), options=", ".join(recipe_names()))
    return value


Levels = Annotated[list[LevelEntry], BeforeValidator(_level_list), AfterValidator(_named)]
OptLevels = Annotated[list[LevelEntry] | None, BeforeValidator(_level_list), AfterValidator(_named)]
Losses = Annotated[list[LossTerm], BeforeValidator(_loss_list), Field(min_length=1)]
OptLosses = Annotated[list[LossTerm] | None, BeforeValidator(_loss_list)]
RecipeName = Annotated[StrictStr, AfterValidator(_recipe)]

# ------------------------------------------------------------------------------------ the schema

AUGS = ("blend", "rgb", "mixup", "cutout", "cutmix", "cutmixup", "cutblur")
SOURCES = ("folder", "skimage", "synthetic")
STRATEGIES = ("single", "rigid_joint", "on_demand", "uncertainty", "curriculum", "anti_curriculum", "mbn_cycle")


class ModelSection(Section):
    type: Str = key(..., "Registered architecture (`restorekit.models.list_models()`), e.g. dncnn.")
    args: Mapping = key({}, "Keyword arguments of the architecture, e.g. {depth: 5, features: 16}.")
    init: OptStr = key(None, "Weights file to start from (safetensors or .pth, read weights-only).")
    init_strict: Bool = key(True, "Whether `init` must match every parameter name (false: the model may have "
                            "parameters the weights lack, e.g. a new head; every loaded tensor must still fit).")
    init_exclude: Strs = key([], "Parameter-name patterns (fnmatch) of the `init` weights NOT to load: they keep "
                             "their fresh initialisation (progressive CARN's new toRGB, another scale's heads).")
    lr_factors: dict[StrictStr, FiniteFloat] = key({}, "Learning-rate multipliers by parameter-name pattern "
                                                   "(fnmatch, first match counts), e.g. {'stages.0.*': 0.1}: "
                                                   "progressive CARN's older modules (Algorithm 1).")
    freeze: Strs = key([], "Parameter-name patterns (fnmatch, e.g. 'model.0.*') to freeze.")
    train_only: Strs = key([], "If not empty, freeze every parameter NOT matching one of these patterns "
                           "(AdaFM: train only the AdaFM layers).")
    compile: Bool = key(False, "Wrap the model in torch.compile (opt-in: slow start, faster steps on GPU).")
    strength: OptFloat = key(None, "Modulation strength lambda passed in the forward call of a modulated model "
                             "(`module(x, strength=...)`) in training and validation; null: the model's default "
                             "(1, the adapted end).")


class TrainData(Section):
    source: Str = key("folder", "Where clean images come from: folder (any usual layout, or degraded/ + clean/ "
                      "pairs), skimage (bundled samples), synthetic.", SOURCES)
    folder: StrictStr | Strs | None = key(None, "Image folder, or a benchmark name under RESTOREKIT_DATA (e.g. "
                                          "Train400); a list pools several (e.g. [T91, BSD200]).")
    images: Strs = key(["astronaut", "camera", "coffee", "chelsea", "coins", "moon"],
                       "source skimage: which bundled samples.")
    count: Int = key(16, "source synthetic: number of images.")
    size: Int = key(128, "source synthetic: image side in pixels.")
    limit: OptInt = key(None, "Use only the first N images of the folder.")
    exclude: Strs = key([], "File names (with or without extension) left out of the folder's images, e.g. the "
                        "BSD200 images Rain100H's clean test images were cropped from (MBN).")
    channels: OptInt = key(None, "1 (grey), 3 (RGB) or null (as stored).", (1, 3))
    grey: Str = key("luma", "How RGB images become 1 channel: luma (full-range BT.601, as PIL/OpenCV) or y "
                    "(MATLAB rgb2ycbcr Y, studio swing: the JPEG and SR benchmarks' Y channel).", tuple(GREY_FORMULAS))
    levels: Levels = key(..., "Degradation levels: a list (or name -> value mapping) of degradation specs such as "
                         "'noise:sigma=0..20'; null for a paired folder; a mapping {spec, folder, patch} gives a "
                         "level its own images (MBN's per-factor data).")
    patch: Int = key(48, "Side of the clean (target) patch; the degraded input is patch/scale. With scales and no "
                     "lr_patch, the target side fixed for every scale (a multiple of each; RED-Net's 50x50 "
                     "patches of the upscaled image).")
    scale: Int = key(1, "Size factor between target and input (SR); patch must be a multiple.")
    scales: OptInts = key(None, "Multi-scale SR (CARN): one scale per batch, drawn from (seed, step), e.g. [2, 3, 4]; "
                          "level specs write it as {scale} ('down:scale={scale}'); the patch from lr_patch (input "
                          "side fixed) or else patch (target side fixed); instead of scale.")
    scale_weights: OptFloats = key(None, "How often each of `scales` is drawn, relative (e.g. [2, 1, 1]: x2 in half "
                                   "the steps; blind SR's x2 otherwise drowns in the larger x3/x4 errors). null: "
                                   "uniform (CARN).")
    lr_patch: OptInt = key(None, "Side of the degraded (LR) input patch; the target patch is lr_patch x scale "
                           "(CARN: 48). Instead of patch.")
    target_scale: OptInt = key(None, "Progressive SR stage (x8 in stages): the model's factor when below scale "
                               "(stage k: 2^k); the target is the HR patch MATLAB-bicubic downscaled by "
                               "scale / target_scale. null: scale.")
    drop_small: Bool = key(False, "Leave out training images smaller than the largest target patch instead of "
                           "failing (T91 has 78-px images).")
    flip: Bool = key(True, "Random horizontal flips.")
    rot: Bool = key(True, "Random quarter-turn rotations (with flip: all 8 dihedral transforms).")
    workers: Int = key(2, "DataLoader worker processes per training process (0: in the main process).")
    prefetch: Int = key(4, "Batches each worker prepares ahead.")
    degrade_on: Str = key("worker", "worker: per-sample degradation in the loader (rank-invariant, exact resume); "
                          "device: batched on the training device (fastest on GPU).", ("worker", "device"))

    @model_validator(mode="after")
    def _one_patch_and_scale_rule(self) -> TrainData:
        """scales/scale and lr_patch/patch are alternatives: a config gives one of each pair (judged by value,
        not by which keys were written: staged configs round-trip through every key's value)."""
        if self.scales is not None and (self.scale != 1 or not self.scales):
            raise _fail("scales (multi-scale, non-empty) replaces scale: give one of them",
                        where="scales" if not self.scales else "scale")
        if self.scales is not None and self.lr_patch is None and any(self.patch % s for s in self.scales):
            raise _fail(f"multi-scale training fixes one side of the patch: give lr_patch (the target is lr_patch "
                        f"x scale) or a patch that every scale divides ({self.patch} for {self.scales})",
                        where="patch")
        if self.lr_patch is not None and self.patch != default_of(TrainData.model_fields["patch"]):
            raise _fail("lr_patch (input side) replaces patch (target side): give one of them", where="patch")
        if self.scale_weights is not None and (len(self.scale_weights) != len(self.scales or [])
                                               or min(self.scale_weights) < 0 or sum(self.scale_weights) <= 0):
            raise _fail("scale_weights needs one non-negative weight per entry of scales, not all zero",
                        where="scale_weights")
        return self


class ValData(Section):
    source: Str = key("skimage", "Validation images: folder, skimage or synthetic.", SOURCES)
    folder: OptStr = key(None, "Folder or benchmark name (e.g. Set12).")
    images: Strs = key(["astronaut", "camera"], "source skimage: which bundled samples.")
    count: Int = key(4, "source synthetic: number of images.")
    size: Int = key(96, "source synthetic: image side.")
    limit: OptInt = key(None, "Only the first N images.")
    channels: OptInt = key(None, "1, 3 or null (as the training data).", (1, 3))
    grey: OptStr = key(None, "RGB to 1 channel for validation: luma or y; null: as data.train.grey.",
                       tuple(GREY_FORMULAS))
    crop: OptInt = key(128, "Central crop side (keeps validation fast; null: whole images).")
    levels: OptLevels = key(None, "Levels to validate (same form as data.train.levels); null: the training levels. "
                            "Fixed levels (sigma=25) give comparable numbers.")
    every: Int = key(0, "Validate every N steps (0: only at the end and, for on_demand, after each epoch).")
    seed: Int = key(0, "Seed of the validation degradations (per image, from its file name).")


class DataSection(Section):
    train: TrainData
    val: ValData = Field(default_factory=ValData)


class StrategySection(Section):
    type: Str = key("rigid_joint", "How levels are sampled: single, rigid_joint, on_demand, uncertainty, "
                    "curriculum, anti_curriculum, mbn_cycle.", STRATEGIES)
    level: Int = key(0, "single: index of the level to train on.")
    epoch_steps: OptInt = key(None, "Steps per epoch (on_demand updates shares after each); null: one pass over "
                              "the training images.")
    curriculum: Str = key("staged", "curriculum/anti_curriculum: staged (one level per stage) or cumulative "
                          "(stages add levels).", ("staged", "cumulative"))
    cycle: OptInts = key(None, "mbn_cycle: minibatches of each level per cycle, e.g. [1, 1, 1, 3].")


class Alphas(Section):
    blend: Float = key(0.6, "Blend: v ~ U(alpha, 1).")
    mixup: Float = key(1.2, "Mixup: v ~ Beta(alpha, alpha).")
    cutout: Float = key(0.001, "Cutout: probability of erasing each input pixel.")
    cutmix: Float = key(0.7, "CutMix: box side ratio ~ N(alpha, 0.01^2).")
    cutmixup: Float = key(0.7, "CutMixup: box side ratio ~ N(alpha, 0.01^2).")
    cutmixup_mixup: Float = key(1.2, "CutMixup: mixup Beta(alpha, alpha).")
    cutblur: Float = key(0.7, "CutBlur: box side ratio ~ N(alpha, 0.01^2).")


class AugmentSection(Section):
    moa: Bool = key(False, "Mixture of augmentations (thesis Ch. 4) on each batch.")
    p: Float = key(0.6, "MoA decision probability: 1.0 for SR, 0.6 for DN/JPEG/mixed, 0.2 for small SR nets.")
    augs: Strs = key(list(AUGS), "MoA members (any of blend, rgb, mixup, cutout, cutmix, cutmixup, cutblur).")
    mix_p: OptFloats = key(None, "Ratios of the members (null: uniform); RealSR: 0.1 each, 0.4 cutblur.")
    alpha: Alphas = Field(default_factory=Alphas)


class Optimizer(Section):
    type: Str = key("adam", "adam or adamw.", ("adam", "adamw"))
    lr: Float = key(1e-4, "Initial learning rate.")
    betas: Floats = key([0.9, 0.999], "Adam betas.")
    eps: Float = key(1e-8, "Adam epsilon.")
    weight_decay: Float = key(0.0, "Weight decay (decoupled for adamw).")


class Scheduler(Section):
    type: Str = key("constant", "constant, multistep or cosine.", ("constant", "multistep", "cosine"))
    milestones: Ints = key([], "multistep: steps at which the lr is multiplied by gamma.")
    gamma: Float = key(0.5, "multistep: factor per milestone.")
    eta_min: Float = key(0.0, "cosine: final learning rate.")
    warmup_steps: Int = key(0, "Linear warm-up from 0 over this many steps.")


class TrainSection(Section):
    steps: Int = key(..., "Optimizer steps (override with --set train.steps=N); the default steps of a stage.")
    batch_size: Int = key(16, "GLOBAL batch: split evenly over torchrun processes, so 1 and N processes see the "
                          "same samples per step.")
    loss: Losses = key("l1", "l1, l2, charbonnier, ssim, mbn (DuRN's -1.1*SSIM + 0.75*L1), vgg54 (VGG-19 relu5_4 "
                       "features; the term needs `weights`, a VGG-19 file: see Losses), likelihood (DL-Net's naive "
                       "likelihood from each sample's degradation record: see Losses), any name added with "
                       "`register_loss`, or a list of {type, weight} terms.")
    charbonnier_eps: Float = key(1e-3, "Charbonnier: sqrt(d^2 + eps^2).")
    optimizer: Optimizer = Field(default_factory=Optimizer)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    grad_clip_norm: Float = key(0.0, "Clip the global gradient norm to this (0: off).")
    grad_clip_value: Float = key(0.0, "Clip each gradient value to +-this (0: off; RCAN fine-tuning: 0.5).")
    ema_decay: Float = key(0.0, "Exponential moving average of the weights (0: off; BasicSR/KAIR: 0.999). "
                           "Validation and final.safetensors use the EMA weights.")
    amp: Str = key("none", "Mixed precision: none, bf16 (CUDA, or CPU autocast with fp32 master weights and an fp32 "
                   "loss) or fp16 (CUDA only, with loss scaling).", ("none", "bf16", "fp16"))
    channels_last: Bool = key(False, "Train in the channels_last memory format (with amp bf16 on CPU: the fast "
                              "oneDNN kernels).")
    log_every: Int = key(10, "Write a log.jsonl line every N steps.")
    checkpoint_every: Int = key(1000, "Write a checkpoint every N steps (0: only the final one).")
    keep_checkpoints: Int = key(2, "How many recent checkpoints to keep.")


class Discriminator(Section):
    type: Str = key("patch", "recipe adversarial: the discriminator; patch: a small strided-conv PatchGAN; pcarn: "
                    "the thesis's 9-conv BatchNorm/LeakyReLU network (PCARN).", ("patch", "pcarn"))
    features: OptInt = key(None, "Width of the first conv (doubled per stride-2 conv); null: 32 for patch, 64 for "
                           "pcarn (the thesis).")
    depth: Int = key(3, "patch: number of stride-2 convs.")
    scales: Ints = key([1], "Image pyramid by average pooling, one separate discriminator per factor, losses summed "
                       "(the thesis's multi-scale discriminator: [1, 2, 4]).")


class AdversarialSection(Section):
    gan_loss: Str = key("vanilla", "recipe adversarial: vanilla (BCE: the standard minimax GAN loss of SRGAN, "
                        "PCARN, ESRGAN; the generator's term in its non-saturating form) or lsgan (least squares).",
                        ("vanilla", "lsgan"))
    weight: Float = key(5e-3, "recipe adversarial: weight of the generator's adversarial term next to train.loss "
                        "(ESRGAN, PCARN: 5e-3).")
    discriminator: Discriminator = Field(default_factory=Discriminator)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    grad_clip_norm: OptFloat = key(None, "Clip the discriminator's global gradient norm (0: off; null: as "
                                   "train.grad_clip_norm). PCARN clips only the generator: 0.")


class Stage(Section):
    """One stage of recipe staged: overrides of the base config, applied in order (stage i+1 starts from
    stage i's final weights). Only the keys given override."""

    name: Str = key(..., "recipe staged: the stage's name (logs, OUT/stages/NAME.safetensors).")
    steps: OptInt = key(None, "recipe staged: the stage's steps (null: train.steps).")
    recipe: RecipeName = key("supervised", "recipe staged: the stage's recipe (supervised, adversarial, ...).")
    levels: OptLevels = key(None, "recipe staged: data.train.levels of the stage (and data.val.levels unless "
                            "val_levels is given).")
    val_levels: OptLevels = key(None, "recipe staged: data.val.levels of the stage.")
    model_args: Mapping = key({}, "recipe staged: merged into model.args (AdaFM: {adafm: true} inserts the layers).")
    init_strict: Bool = key(True, "recipe staged: whether the previous stage's weights must fit every parameter "
                            "(false when this stage adds layers).")
    freeze: OptStrs = key(None, "recipe staged: model.freeze of the stage.")
    train_only: OptStrs = key(None, "recipe staged: model.train_only of the stage (AdaFM: ['*adafm*']).")
    strength: OptFloat = key(None, "recipe staged: model.strength of the stage (null here: the base config's).")
    loss: OptLosses = key(None, "recipe staged: train.loss of the stage.")
    set: Mapping = key({}, "recipe staged: any other overrides, dotted key -> value (e.g. {train.optimizer.lr: "
                       "5e-4}), as --set.")


class LoggingSection(Section):
    tensorboard: Bool = key(True, "Write TensorBoard event files under OUT/tensorboard.")
    progress: Str = key("auto", "Progress bar: auto (only on a terminal), on, off.", ("auto", "on", "off"))


class RecurrentSection(Section):
    targets: Str = key("last", "recipe recurrent: what the 0.2 beside the own factor's step (0.8) learns. last: the "
                       "last step against the clean image (MBN Sec. 3.6, the paper); every_step: each other step "
                       "against its own target, the degraded input before the own factor's step and the clean image "
                       "after it, 0.2 shared among them (ours: every path is told directly to pass an image "
                       "without its factor through).", ("last", "every_step"))


class Config(Section):
    name: Str = key("run", "Run name, written into logs and the model card.")
    seed: Int = key(0, "Seed of everything random: image order, crops, flips, levels, noise, augmentation, init.")
    task: Str = key("denoise", "Task whose metric protocol validation uses (RGB or Y, border crop), as in "
                    "`restorekit eval`.", EVAL_TASKS)
    device: Str = key("auto", "cpu, cuda, cuda:N or auto (CUDA when available). Under torchrun each process uses "
                      "cuda:LOCAL_RANK.")
    threads: OptInt = key(None, "CPU threads for the model (torch.set_num_threads); null: the cores left after the "
                          "loader workers (on a 2-core machine with 2 workers: 1), which avoids oversubscription "
                          "stalls.")
    deterministic: Bool = key(False, "torch.use_deterministic_algorithms(True) and no cuDNN autotuning: "
                              "bit-identical reruns and resumes (slower on GPU).")
    recipe: RecipeName = key("supervised", "How the networks learn: supervised (one network, train.loss), "
                             "adversarial (generator + discriminator, section adversarial), staged (the stages list, "
                             "one after the other), or a recipe added with `register_recipe`.")
    model: ModelSection
    data: DataSection
    strategy: StrategySection = Field(default_factory=StrategySection)
    augment: AugmentSection = Field(default_factory=AugmentSection)
    train: TrainSection
    adversarial: AdversarialSection = Field(default_factory=AdversarialSection)
    recurrent: RecurrentSection = Field(default_factory=RecurrentSection)
    stages: list[Stage] = key([], "recipe staged: the stages, each a mapping of the stage keys below.")
    logging: LoggingSection = Field(default_factory=LoggingSection)

    _origin: str = PrivateAttr("<config>")

    @property
    def origin(self) -> str:
        """The file (or '<config>') the config came from: the prefix of every error about it."""
        return self._origin

    @model_validator(mode="after")
    def _stages_need_staged(self) -> Config:
        if (self.recipe == "staged") != bool(self.stages):
            raise _fail("recipe staged needs a non-empty stages list, and stages need recipe staged",
                        where="stages" if self.stages else "recipe")
        return self


# ------------------------------------------------------------------------------------ helpers


def _annotation_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (Section, list[Stage], Annotated[...]), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _annotation_model(arg)
        if found is not None:
            return found
    return None


def _sections(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo, type[BaseModel] | None]]:
    for name, info in model.model_fields.items():
        yield name, info, _annotation_model(info.annotation)


def iter_keys(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """(dotted key, FieldInfo) for every leaf, in schema order (docs and tests). Stage keys are listed
    as `stages[].KEY`."""
    for name, info, section in _sections(model):
        dotted = f"{prefix}{name}"
        if section is Stage:
            yield dotted, info
            yield from iter_keys(section, dotted + "[].")
        elif section is not None and section is not LevelEntry and section is not LossTerm:
            yield from iter_keys(section, dotted + ".")
        else:
            yield dotted, info


def is_required(info: FieldInfo) -> bool:
    return info.default is PydanticUndefined and info.default_factory is None


def default_of(info: FieldInfo) -> Any:
    return info.default_factory() if info.default_factory is not None else info.default


def _model_at(parts: list[str]) -> type[BaseModel] | None:
    """The section model a dotted path leads to (list indices skipped)."""
    model: type[BaseModel] | None = Config
    for part in parts:
        if model is None:
            return None
        if part.startswith("["):
            continue
        info = model.model_fields.get(part)
        model = _annotation_model(info.annotation) if info is not None else None
    return model


def _dotted(parts: list[str]) -> str:
    return "".join(p if p.startswith("[") or i == 0 else "." + p for i, p in enumerate(parts))


EXPECTED = {"int": "an integer", "float": "a number", "finite": "a finite number", "bool": "true or false",
            "string": "a string", "list": "a list", "dict": "a mapping of keys", "model": "a mapping of keys"}


def _message(error: dict) -> tuple[str, str]:
    """(dotted key, what is wrong) of pydantic's first error, in our wording."""
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in error["loc"]]
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        known = list((_model_at(parts[:-1]) or Config).model_fields)
        close = difflib.get_close_matches(parts[-1], known, n=1)
        parent = _dotted(parts[:-1])
        hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else \
            f"; known keys here: {', '.join(known)}"
        dotted = _dotted(parts)
        return dotted, f"unknown key {dotted!r}{hint}"
    where = (error.get("ctx") or {}).get("where")
    dotted = _dotted(parts + [where] if where else parts)
    if kind == "missing":
        section = _model_at(parts[:-1])
        info = section.model_fields.get(parts[-1]) if section is not None else None
        return dotted, f"is required ({info.description})" if info is not None else "is required"
    expected = EXPECTED.get(kind.split("_")[0])
    if expected and kind != "restorekit":
        shown = "null" if value is None else type(value).__name__
        return dotted, f"expected {expected}, got {value!r} ({shown})"
    return dotted, error["msg"].removeprefix("Value error, ")


# PyYAML reports some bad scalars with plain Python errors, not YAMLError ('2001-02-30', '!!int x',
# '!!timestamp x'), and very deep nesting with RecursionError (issue 13, fuzzing).
_YAML_ERRORS = (yaml.YAMLError, ValueError, TypeError, AttributeError, RecursionError)


def yaml_problem(err: Exception) -> str:
    """PyYAML's multi-line report (with a caret drawing) as one line: the problem and where it is."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or " ".join(str(err).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def parse_override(text: str) -> tuple[str, Any]:
    """'train.steps=20' -> ('train.steps', 20): the value is read as YAML ('1e-4' stays a numeric string)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.steps=1000")
    dotted, _, value = text.partition("=")
    dotted = dotted.strip()
    if not dotted:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        return dotted, yaml.safe_load(value) if value.strip() else None
    except _YAML_ERRORS as err:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({yaml_problem(err)})") from err


def apply_override(raw: dict, dotted: str, value: Any) -> None:
    """Set `dotted` in the raw mapping, creating sections; a numeric part indexes a list (stages.1.steps).

    A part that is not an index of the list it meets is a ConfigError (it was an AttributeError).
    """
    parts = dotted.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        key: Any = part
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                raise ConfigError(f"{'.'.join(parts[:depth])} is a list of {len(node)} item(s); "
                                  f"{part!r} is not one of its indexes")
            key = int(part)
        if depth == len(parts) - 1:
            node[key] = value
            return
        child = node[key] if isinstance(node, list) else node.get(key)
        if not isinstance(child, (dict, list)):
            child = node[key] = {}
        node = child


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read (with its `base:` chain), override and validate a config; every error names the file and the key."""
    return validate_config(read_config_yaml(Path(path)), str(path), overrides)


BASE_KEY = "base"


def read_config_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The raw mapping of a config file. A top-level `base: other.yaml` (relative to this file) makes it the
    differences from that config: mappings merge key by key, anything else (lists included) replaces; a phase
    or fine-tune config then shows only what it changes (mmagic's `_base_`, one level or a chain)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file" + (f" (the base of {chain[-1]})" if chain else "")) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        raw = yaml.safe_load(text)
    except _YAML_ERRORS as err:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(err)})") from None
    if not isinstance(raw, dict) or BASE_KEY not in raw:
        return raw
    base = raw.pop(BASE_KEY)
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: {BASE_KEY}: expected the path of another config, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        raise ConfigError(f"{path}: {BASE_KEY}: {base} leads back to itself")
    inherited = read_config_yaml(base_path, (*chain, path.resolve()))
    if not isinstance(inherited, dict):
        raise ConfigError(f"{base_path}: expected a mapping of keys at the top level (the base of {path})")
    return merge_config(inherited, raw)


REPLACE_KEY = "_delete_"


def merge_config(base: dict, changes: dict) -> dict:
    """`base` with `changes` on top: nested mappings merged key by key, other values (lists too) replaced.

    A mapping in `changes` holding `_delete_: true` (mmengine's spelling) replaces the base's mapping whole
    instead, e.g. a new model type's `args` that must not inherit the old model's keys."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and value.get(REPLACE_KEY) is not True and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = strip_replace_marks(copy.deepcopy(value))
    return merged


def strip_replace_marks(value: Any) -> Any:
    """A value with every `_delete_` key removed: it has done its work (or had no base mapping to replace)."""
    if isinstance(value, dict):
        return {k: strip_replace_marks(v) for k, v in value.items() if k != REPLACE_KEY}
    return value


def validate_config(raw: Any, origin: str = "<config>", overrides: list[str] | tuple = ()) -> Config:
    """Validate a raw mapping (after `--set` overrides); errors are one line, `ORIGIN: dotted.key: ...`."""
    raw = copy.deepcopy(raw) if raw is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping of keys at the top level")
    overridden: dict[str, str] = {}
    for text in overrides:
        dotted, value = parse_override(text)
        try:
            apply_override(raw, dotted, value)
        except ConfigError as err:
            raise ConfigError(f"{origin} (--set {text}): {err}") from None
        overridden[dotted.replace(".", "").replace("[", "").replace("]", "")] = text

    def origin_of(dotted: str) -> str:
        flat = dotted.replace(".", "").replace("[", "").replace("]", "")
        for set_key, text in overridden.items():
            if flat.startswith(set_key) or set_key.startswith(flat):
                return f"{origin} (--set {text})"
        return origin

    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        dotted, message = _message(err.errors()[0])
        where = f"{dotted}: " if dotted else ""
        raise ConfigError(f"{origin_of(dotted)}: {where}{message}") from None
    config._origin = origin
    return config


# ------------------------------------------------------------------------------------ docs


def _yaml_inline(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def reference_markdown() -> str:
    """The config reference table of docs/training.md, generated from the schema."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for dotted, info in iter_keys():
        default = "**required**" if is_required(info) else f"`{_yaml_inline(_plain(default_of(info)))}`"
        choices = choices_of(info)
        one_of = f" One of: {', '.join(f'`{c}`' for c in choices)}." if choices and len(choices) <= 3 else ""
        lines.append(f"| `{dotted}` | {default} | {info.description}{one_of} |")
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    return value

