"""The training loop: one config in, `OUT/final.safetensors` (+ model card) out, resumable at any checkpoint.

`prepare` builds everything (model, images, degradation pipelines, strategy, validation inputs) and runs
every check that can fail, so a bad config stops before the first step with a message naming the file
and the key. `train` then runs the steps of each stage (one, unless `recipe: staged`):

    plan keys (levels, images, seeds) -> workers crop/flip/degrade -> [MoA] -> recipe.train_step
    (Supervised: model -> per-sample loss -> [uncertainty weighting] -> backward (DDP) -> clip -> optimizer
    -> scheduler -> EMA; Adversarial adds the discriminator's step) -> validate / log / checkpoint

The loop owns data, validation, logs and checkpoints; what happens to the networks in a step is the
recipe's (`restorekit.train.recipes`).

Reproducibility: every random choice of a step derives from (seed, step) (and the rank only for MoA),
the global batch is split over ranks by position, and checkpoints hold every state, so a rerun, a
resumed run and an N-process run agree (bit-exactly on CPU with `deterministic: true`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from restorekit import __version__, evaluation, metrics, paths
from restorekit.atomic import write_bytes
from restorekit.card import ModelCard, Training, write_card
from restorekit.data.augment import MoA
from restorekit.data.datasets import Level, PatchDataset, collate, degrade_batch, target_of
from restorekit.data.samplers import LevelStrategy, StepBatchSampler, StepPlan, build_strategy, mix_seed
from restorekit.data.sources import (
    ImageSet,
    at_least,
    center_crop,
    load_folder,
    load_skimage,
    pool,
    synthesize,
    to_tensor,
)
from restorekit.degrade import factor_of
from restorekit.distributed import Dist, all_reduce_mean, barrier, broadcast_object, gather_objects
from restorekit.errors import ConfigError, RestorekitError
from restorekit.infer import run_model
from restorekit.models import Model, ModelInfo, upsample_input
from restorekit.train import checkpoint as ckpt
from restorekit.train.config import Config, LevelEntry
from restorekit.train.losses import Loss, UncertaintyWeighting
from restorekit.train.monitor import JsonlLog, Progress, TensorBoard
from restorekit.train.recipes import RECIPES, Batch, Recipe, StagePlan, plan_stages, state_dict_cpu

# ------------------------------------------------------------------------------------- start-up


@dataclass
class ValLevel:
    name: str
    pairs: list[tuple[torch.Tensor, torch.Tensor]]  # (degraded input, target) per image
    protocol: metrics.Protocol
    conditions: dict[str, Any] = field(default_factory=dict)  # e.g. the scale of a multi-scale model
    records: list | None = None  # each pair's degradation record, for a model that takes it (DL-Net)


@dataclass
class Prepared:
    """Everything built and checked at start-up."""

    cfg: Config
    origin: str
    module: nn.Module
    info: ModelInfo
    sources: list[ImageSet]
    levels: list[Level]
    strategy: LevelStrategy
    plan: StepPlan
    dataset: PatchDataset
    validation: list[ValLevel]
    loss: Loss
    weighting: UncertaintyWeighting | None
    moa: MoA | None
    epoch_steps: int
    channels: int | None
    trainable: list[str] = field(default_factory=list)
    lr_factors: dict[str, float] = field(default_factory=dict)  # trainable parameter name -> lr multiplier
    batch_conditions: dict[str, Any] = field(default_factory=dict)  # of the batch being trained (its scale)

    @property
    def conditions(self) -> dict[str, Any]:
        """The forward call's conditions: the configured strength of a modulated model, and while a batch
        trains (`training_batch`) that batch's own, e.g. the scale of a multi-scale SR step."""
        strength = self.cfg.model.strength
        fixed = {"strength": strength} if strength is not None and self.info.modulated else {}
        return {**fixed, **self.batch_conditions}

    @property
    def keeps_records(self) -> bool:
        """Whether batches carry their degradation records: for a model taking them (DL-Net) or a loss term
        reading them (the naive likelihood)."""
        return "record" in self.info.inputs or self.loss.needs_records

    @contextlib.contextmanager
    def training_batch(self, levels: torch.Tensor, records: list | None = None):
        """The recipe's forward calls inside see the conditions of the batch with these levels: `scale=S` for a
        model that takes the scale (every sample of a batch has one scale: `StepPlan`), and the samples'
        degradation records for a model that takes them (DL-Net)."""
        scales = {self.levels[int(i)].scale for i in levels.unique().tolist()}
        if len(scales) != 1:  # the plan draws one scale per step; anything else is a bug, not a config error
            raise RuntimeError(f"a training batch mixes scales {sorted(scales)}")
        self.batch_conditions = scale_condition(self.info, scales.pop())
        factors = {level_factor(self.info, self.levels[int(i)].spec) for i in levels.unique().tolist()}
        if len(factors) != 1:  # checked at start-up (check_factors): a bug, not a config error
            raise RuntimeError(f"a training batch mixes degradation factors {sorted(map(str, factors))}")
        factor = factors.pop()
        if factor is not None:
            self.batch_conditions["factor"] = factor
        if records is not None and "record" in self.info.inputs:
            self.batch_conditions["record"] = records
        try:
            yield
        finally:
            self.batch_conditions = {}


def scale_condition(info: ModelInfo, scale: int) -> dict[str, int]:
    """`{"scale": S}` for a model that takes the scale as a call argument (CARN's heads) and an SR scale."""
    return {"scale": scale} if scale > 1 and "scale" in info.inputs else {}


def level_factor(info: ModelInfo, spec: str | None) -> str | None:
    """The factor a model taking the `factor` condition (MBN) is told for a level: the spec's single degradation
    type when the model has a path for it; None (run every path, R-MBN) for mixtures and paired folders."""
    if "factor" not in info.inputs or not spec:
        return None
    factor = factor_of(spec)
    return factor if factor in info.factors else None


def check_factors(cfg: Config, origin: str, info: ModelInfo, levels: list[Level]) -> None:
    """A factor-conditioned model runs one path per batch: levels of different factors cannot share a batch
    (MBN's step 1 is a cycle of single-factor minibatches: strategy mbn_cycle)."""
    factors = {level_factor(info, level.spec) for level in levels}
    if len(factors) > 1 and cfg.strategy.type not in ("single", "mbn_cycle"):
        raise _fail(origin, "strategy.type", f"{cfg.model.type} runs one factor's path per batch and these levels "
                    f"have several ({', '.join(sorted(map(str, factors)))}): use mbn_cycle (or single)")


def _fail(origin: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{origin}: {key}: {message}")


def build_model(cfg: Config, origin: str, init_state: dict | None = None, init_strict: bool = True
                ) -> tuple[nn.Module, ModelInfo]:
    """The module and its description; weights from `model.init` or, for a later stage, `init_state`."""
    from restorekit.models import create_model, get_architecture, list_models
    from restorekit.zoo import read_weights

    if cfg.model.type not in list_models():
        raise _fail(origin, "model.type", f"unknown model {cfg.model.type!r}; registered: {', '.join(list_models())}")
    try:
        module = create_model(cfg.model.type, **cfg.model.args)
    except RestorekitError as err:
        raise _fail(origin, "model.args", str(err)) from None
    architecture = get_architecture(cfg.model.type)
    info = architecture.info(cfg.model.args)
    if cfg.model.init:
        try:
            init_state, init_strict = read_weights(Path(cfg.model.init).expanduser()), cfg.model.init_strict
            if architecture.convert:  # a released layout (CARN-pytorch's carn_m.pth) -> ours; ours unchanged
                init_state = architecture.convert(init_state)
        except RestorekitError as err:
            raise _fail(origin, "model.init", str(err)) from None
    if init_state is not None:
        load_init(module, init_state, init_strict, cfg.model.init_exclude, f"{origin}: model.init: {cfg.model.type}")
    if cfg.model.strength is not None:
        if not info.modulated:
            raise _fail(origin, "model.strength", f"{cfg.model.type} has no strength control")
        if not 0.0 <= cfg.model.strength <= 1.0:
            raise _fail(origin, "model.strength", f"must be in [0, 1], got {cfg.model.strength}")
    return module, info


def load_init(module: nn.Module, state: dict[str, torch.Tensor], strict: bool, exclude: list[str], where: str
              ) -> None:
    """Start `module` from `state` (model.init, or the previous stage's weights) less the `exclude`d tensors.

    strict: every other parameter of the module is in `state`. Not strict: the module may have more (a new
    stage, head or layer keeps its initialisation). Either way every tensor loaded must exist in the module
    with its shape: torch's strict=False would skip a misspelt or unrelated key in silence."""
    unused = [p for p in exclude if not any(fnmatch.fnmatchcase(k, p) for k in state)]
    if unused:
        raise ConfigError(f"{where}: init_exclude pattern {unused[0]!r} matches no tensor of the weights "
                          f"(e.g. {', '.join(list(state)[:3])})")
    excluded = {k for k in (*state, *module.state_dict()) if any(fnmatch.fnmatchcase(k, p) for p in exclude)}
    kept = {k: v for k, v in state.items() if k not in excluded}
    own = module.state_dict()
    unknown = [k for k in kept if k not in own]
    misfit = [k for k in kept if k in own and kept[k].shape != own[k].shape]
    missing = [k for k in own if k not in kept and k not in excluded]
    if unknown:
        raise ConfigError(f"{where} has no tensor {unknown[0]!r} of the weights ({len(unknown)} such); exclude "
                          "what should not load with model.init_exclude")
    if misfit:
        k = misfit[0]
        raise ConfigError(f"{where}: {k!r} is {tuple(kept[k].shape)} in the weights but {tuple(own[k].shape)} here")
    if strict and missing:
        raise ConfigError(f"{where}: the weights lack {missing[0]!r} ({len(missing)} missing); set init_strict: "
                          "false if the model adds layers")
    module.load_state_dict(kept, strict=False)


def learning_rate_factors(model: nn.Module, factors: dict[str, float], origin: str) -> dict[str, float]:
    """Trainable parameter name -> lr multiplier from `model.lr_factors` (first matching pattern; else 1):
    progressive CARN's Algorithm 1 trains each older stage at 0.1x the lr of the one after it."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for pattern, factor in factors.items():
        if factor <= 0:
            raise _fail(origin, "model.lr_factors", f"{pattern!r}: {factor} is not positive (freeze parameters "
                        "with model.freeze)")
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise _fail(origin, "model.lr_factors", f"pattern {pattern!r} matches no trainable parameter "
                        f"(e.g. {', '.join(names[:3])})")
    return {n: next((f for p, f in factors.items() if fnmatch.fnmatchcase(n, p)), 1.0) for n in names}


def apply_freezing(model: nn.Module, freeze: list[str], train_only: list[str], origin: str) -> list[str]:
    """Set requires_grad from name patterns; every pattern must match something (typos fail early)."""
    names = [n for n, _ in model.named_parameters()]
    for key, patterns in (("model.freeze", freeze), ("model.train_only", train_only)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise _fail(origin, key, f"pattern {pattern!r} matches no parameter (e.g. {', '.join(names[:3])})")
    trainable = []
    for name, param in model.named_parameters():
        frozen = any(fnmatch.fnmatchcase(name, p) for p in freeze)
        if train_only and not any(fnmatch.fnmatchcase(name, p) for p in train_only):
            frozen = True
        param.requires_grad_(not frozen)
        if not frozen:
            trainable.append(name)
    if not trainable:
        raise _fail(origin, "model.freeze", "every parameter is frozen: nothing to train")
    return trainable


def load_source(section: Any, key: str, origin: str, channels: int | None, folder: str | None = None,
                grey: str = "luma") -> ImageSet:
    """Images of a data section (or of one level's own folder); `grey`: how RGB becomes 1 channel."""
    try:
        if folder is not None or section.source == "folder":
            names = folder if folder is not None else section.folder
            if not names:
                raise _fail(origin, f"{key}.folder", "source 'folder' needs a folder (a path or a benchmark name)")
            sets = []
            for name in [names] if isinstance(names, str) else names:  # a list is pooled (T91 + BSD200)
                try:
                    path = paths.resolve_dataset(name)
                except RestorekitError as err:
                    raise _fail(origin, f"{key}.folder" if folder is None else key, str(err)) from None
                sets.append(load_folder(path, channels, section.limit, grey, getattr(section, "exclude", ())))
            return pool(sets)
        if section.source == "skimage":
            return load_skimage(list(section.images)[: section.limit], channels, grey)
        return synthesize(section.count, section.size, channels or 3, seed=0)
    except ConfigError:
        raise
    except RestorekitError as err:
        raise _fail(origin, key, str(err)) from None


def parse_level_spec(spec: str, key: str, origin: str):
    from restorekit.degrade import parse_spec

    try:
        return parse_spec(spec)
    except RestorekitError as err:
        raise _fail(origin, key, str(err)) from None
    except (ValueError, TypeError) as err:
        raise _fail(origin, key, f"invalid degradation spec {spec!r}: {err}") from None


SCALE_FIELD = "{scale}"  # where a level spec names the SR factor of the step ('down:scale={scale}')


def train_scales(cfg: Config) -> list[int]:
    """The SR factors training draws from: data.train.scales (one per step), else [data.train.scale]."""
    train = cfg.data.train
    return list(train.scales) if train.scales else [train.scale]


def target_down(cfg: Config, scale: int) -> int:
    """How much the HR patch is downscaled into the target: scale / target_scale (progressive stages), else 1."""
    target = cfg.data.train.target_scale
    return scale // target if target else 1


def at_scale(text: str | None, scale: int) -> str | None:
    return text.replace(SCALE_FIELD, str(scale)) if text else text


def scaled_name(name: str, scale: int, several: bool) -> str:
    """A level's name at one scale: its {scale} filled in, or ' xS' added when several scales share it."""
    if SCALE_FIELD in name:
        return at_scale(name, scale)
    return f"{name} x{scale}" if several else name


def check_scales(cfg: Config, origin: str, info: ModelInfo) -> None:
    """Multi-scale and progressive SR settings against each other and against the model's declared scales."""
    train, scales = cfg.data.train, train_scales(cfg)
    if any(s <= 0 for s in scales) or len(set(scales)) != len(scales):
        raise _fail(origin, "data.train.scales", f"needs distinct positive factors, got {scales}")
    if len(scales) > 1:
        if "scale" not in info.inputs:
            raise _fail(origin, "data.train.scales", f"{cfg.model.type} with these arguments does not take the "
                        "scale as a call argument: multi-scale training needs one that does (carn, carn_m "
                        "without args.scale)")
        if cfg.strategy.type in ("on_demand", "uncertainty"):
            raise _fail(origin, "strategy.type", f"{cfg.strategy.type} steers per level, not per scale: use "
                        "rigid_joint, single, curriculum or mbn_cycle with data.train.scales")
        missing = [i for i, lv in enumerate(train.levels) if SCALE_FIELD not in (lv.spec or "")]
        if missing:
            raise _fail(origin, f"data.train.levels[{missing[0]}]", "with several scales a level spec names the "
                        "factor as {scale}, e.g. 'down:scale={scale}'")
        if any(lv.patch for lv in train.levels):
            raise _fail(origin, "data.train.levels", "multi-scale levels take their patch from lr_patch x scale "
                        "or data.train.patch")
    if train.target_scale is not None:
        if len(scales) > 1 or train.target_scale <= 0 or scales[0] % train.target_scale:
            raise _fail(origin, "data.train.target_scale", f"{train.target_scale} must divide the one "
                        f"data.train.scale ({', '.join(map(str, scales))})")
    for scale in scales:
        factor = train.target_scale or scale
        if factor > 1 and factor not in info.scales:
            raise _fail(origin, "model.args", f"{cfg.model.type} upscales by x{'/x'.join(map(str, info.scales))}, "
                        f"but training asks for x{factor}")


def build_levels(cfg: Config, origin: str, channels: int | None) -> tuple[list[ImageSet], list[Level]]:
    """The training levels, once per scale for multi-scale SR (index = scale index * levels + level, the
    order `StepPlan` draws in), with their images; images too small for a level's patch are an error, or
    left out with data.train.drop_small."""
    train = cfg.data.train
    scales = train_scales(cfg)
    sources: list[ImageSet] = [load_source(train, "data.train", origin, channels, grey=train.grey)]
    own_source: dict[int, int] = {}  # level entry -> index of its own folder's source
    levels = []
    for scale in scales:
        for i, entry in enumerate(train.levels):
            key = f"data.train.levels[{i}]"
            if entry.folder and i not in own_source:
                sources.append(load_source(train, f"{key}.folder", origin, channels, folder=entry.folder,
                                           grey=train.grey))
                own_source[i] = len(sources) - 1
            source = own_source.get(i, 0)
            paired = sources[source].paired
            if paired and entry.spec:
                raise _fail(origin, key, "a paired folder (degraded/ + clean/) provides the inputs; use null as its "
                            "spec")
            if not paired and not entry.spec:
                raise _fail(origin, key, "needs a degradation spec (e.g. 'noise:sigma=25'): the images are clean")
            spec = at_scale(entry.spec, scale)
            pipeline = parse_level_spec(spec, key, origin) if spec else None
            level_scale = sources[source].scale if paired else scale
            patch = entry.patch or (train.lr_patch * level_scale if train.lr_patch else train.patch)
            if patch % level_scale:
                raise _fail(origin, "data.train.patch", f"{patch} is not a multiple of the scale {level_scale}")
            levels.append(Level(scaled_name(entry.name, scale, len(scales) > 1), spec, source, patch, pipeline,
                                level_scale, target_down(cfg, level_scale)))
    sources = [fit_patches(images, max(lv.patch for lv in levels if lv.source == i), train.drop_small, origin)
               if any(lv.source == i for lv in levels) else images for i, images in enumerate(sources)]
    per_scale = len(train.levels)
    for group in range(len(scales)):
        if len({lv.patch for lv in levels[group * per_scale:(group + 1) * per_scale]}) > 1 and \
                cfg.strategy.type not in ("single", "mbn_cycle"):
            raise _fail(origin, "data.train.levels", "levels with different patch sizes need strategy single or "
                        "mbn_cycle (every batch must hold one patch size)")
    return sources, levels


def fit_patches(images: ImageSet, patch: int, drop_small: bool, origin: str) -> ImageSet:
    """`images` if every one gives a patch x patch crop; else the ones that do (drop_small), or an error."""
    if images.min_side() >= patch:
        return images
    if not drop_small:
        raise _fail(origin, "data.train.patch", f"{patch} is larger than the smallest training image "
                    f"({images.min_side()} px) of {images.origin} (data.train.drop_small: true leaves such "
                    "images out)")
    kept = at_least(images, patch)
    if not len(kept):
        raise _fail(origin, "data.train.patch", f"{patch} is larger than every training image of {images.origin}")
    return kept


def build_validation(cfg: Config, origin: str, channels: int | None, info: ModelInfo) -> list[ValLevel]:
    """Validation pairs per level, and per scale for multi-scale SR (each with its `scale` condition and
    border crop = scale); a progressive stage's target is downscaled like its training targets."""
    val = cfg.data.val
    images = load_source(val, "data.val", origin, channels, grey=val.grey or cfg.data.train.grey)
    scales = train_scales(cfg)
    entries: list[LevelEntry] = val.levels if val.levels is not None else cfg.data.train.levels
    key_base = "data.val.levels" if val.levels is not None else "data.train.levels"
    out = []
    if images.paired:  # the folder provides the inputs: one validation level
        protocol = evaluation.default_setup(cfg.task, scale=images.scale if cfg.task == "sr" else None).protocol
        crop_lq = val.crop // images.scale if val.crop else None
        pairs = [(to_tensor(center_crop(d, crop_lq)), to_tensor(center_crop(c, val.crop)))
                 for d, c in zip(images.degraded, images.clean, strict=True)]
        return [ValLevel("paired", pairs, protocol, scale_condition(info, images.scale))]
    for scale in scales:
        down = target_down(cfg, scale)
        for i, entry in enumerate(entries):
            key = f"{key_base}[{i}]"
            if not entry.spec:
                raise _fail(origin, key, "validation on clean images needs a degradation spec")
            spec = at_scale(entry.spec, scale)
            parse_level_spec(spec, key, origin)
            try:
                setup = evaluation.default_setup(cfg.task, scale=scale if (scale > 1 or cfg.task == "sr") else None,
                                                 degrade=spec, seed=val.seed, seed_mode="name")
                pairs, records = [], []
                for name, array in zip(images.names, images.clean, strict=True):
                    degraded, target, record = evaluation.make_example(
                        to_tensor(center_crop(array, val.crop)), name, setup, with_record="record" in info.inputs)
                    pairs.append((degraded, target_of(target, down)))
                    records.append(record)
            except RestorekitError as err:
                raise _fail(origin, key, str(err)) from None
            protocol = setup.protocol
            if down > 1 and protocol.crop_border:  # the border crop of the stage's output factor
                protocol = replace(protocol, crop_border=scale // down)
            factor = level_factor(info, spec)
            conditions = {**scale_condition(info, scale), **({"factor": factor} if factor else {})}
            out.append(ValLevel(scaled_name(entry.name, scale, len(scales) > 1), pairs, protocol,
                                conditions, records if "record" in info.inputs else None))
    return out


def check_records(cfg: Config, origin: str, info: ModelInfo, sources: list[ImageSet], loss_reads: bool = False
                  ) -> None:
    """A model taking the degradation record (DL-Net), or a loss reading it (`loss_reads`: the naive
    likelihood), trains on inputs the trainer degrades itself, as they are: paired folders carry no record,
    and MoA or a progressive stage's downscaled target would make the record describe another image than the
    one the model sees."""
    if "record" not in info.inputs and not loss_reads:
        return
    who = f"{cfg.model.type} takes" if "record" in info.inputs else "the loss (likelihood) reads"
    if any(source.paired for source in sources):
        raise _fail(origin, "data.train", f"{who} the degradation record of its input: train on "
                    "clean images with a degradation spec, not on a paired folder (no record)")
    if cfg.augment.moa:
        raise _fail(origin, "augment.moa", f"{who} the degradation record of its input; mixed "
                    "inputs (MoA) have none")
    if any(target_down(cfg, scale) > 1 for scale in train_scales(cfg)):
        raise _fail(origin, "data.train", f"{who} the degradation record: a progressive stage's "
                    "downscaled target is not what the record degrades")


def check_numbers(cfg: Config, origin: str, dist: Dist) -> None:
    """Range checks the schema cannot express alone (positive counts, the batch splitting over ranks)."""
    if cfg.train.amp == "fp16" and dist.device.type != "cuda":
        raise _fail(origin, "train.amp", f"fp16 needs a CUDA device (loss scaling); this run is on {dist.device}")
    for key, value in (("train.steps", cfg.train.steps), ("train.batch_size", cfg.train.batch_size),
                       ("train.log_every", cfg.train.log_every), ("data.train.patch", cfg.data.train.patch),
                       ("data.train.scale", cfg.data.train.scale)):
        if value <= 0:
            raise _fail(origin, key, f"must be positive, got {value}")
    if cfg.train.batch_size % dist.world:
        raise _fail(origin, "train.batch_size", f"{cfg.train.batch_size} does not split evenly over {dist.world} "
                    "processes (it is the global batch)")
    for key, sched in (("train.scheduler", cfg.train.scheduler), ("adversarial.scheduler", cfg.adversarial.scheduler)):
        if sched.milestones != sorted(sched.milestones):
            raise _fail(origin, f"{key}.milestones", f"must be increasing, got {sched.milestones}")


def build_moa(cfg: Config, origin: str) -> MoA | None:
    if not cfg.augment.moa:
        return None
    a = cfg.augment.alpha
    try:
        return MoA(tuple(cfg.augment.augs), cfg.augment.p, tuple(cfg.augment.mix_p) if cfg.augment.mix_p else None,
                   {"blend": a.blend, "mixup": a.mixup, "cutout": a.cutout, "cutmix": a.cutmix,
                    "cutmixup": a.cutmixup, "cutblur": a.cutblur}, a.cutmixup_mixup)
    except ValueError as err:
        raise _fail(origin, "augment", str(err)) from None


def prepare(cfg: Config, dist: Dist, init_state: dict | None = None, init_strict: bool = True) -> Prepared:
    """Build and check everything; raises ConfigError (naming file and key) before any training.

    init_state: the previous stage's final weights (recipe staged), loaded like `model.init`."""
    origin = cfg.origin
    check_numbers(cfg, origin, dist)
    torch.manual_seed(cfg.seed)
    module, info = build_model(cfg, origin, init_state, init_strict)
    trainable = apply_freezing(module, cfg.model.freeze, cfg.model.train_only, origin)
    lr_factors = learning_rate_factors(module, cfg.model.lr_factors, origin)
    check_scales(cfg, origin, info)
    takes = info.in_channels
    if takes and cfg.data.train.channels and cfg.data.train.channels != takes:
        raise _fail(origin, "data.train.channels", f"{cfg.data.train.channels}, but {cfg.model.type} takes "
                    f"{takes}-channel images")
    channels = cfg.data.train.channels or takes
    sources, levels = build_levels(cfg, origin, channels)
    validation = build_validation(cfg, origin, cfg.data.val.channels or channels, info)
    s = cfg.strategy
    per_scale = len(cfg.data.train.levels)  # the strategy's levels (each repeated per scale in `levels`)
    if s.type == "mbn_cycle" and (s.cycle is None or len(s.cycle) != per_scale):
        raise _fail(origin, "strategy.cycle", f"mbn_cycle needs one count per level ({per_scale}), got {s.cycle}")
    if s.type == "on_demand" and len(validation) != len(levels):
        raise _fail(origin, "data.val.levels", f"on_demand needs one validation level per training level "
                    f"({len(levels)}), got {len(validation)}")
    strategy = build_strategy(s.type, per_scale, level=s.level, total_steps=cfg.train.steps,
                              curriculum=s.curriculum, cycle=s.cycle, seed=cfg.seed)
    plan = StepPlan(strategy, [lv.source for lv in levels], [len(src) for src in sources],
                    cfg.train.batch_size, cfg.seed, scales=len(train_scales(cfg)),
                    scale_weights=cfg.data.train.scale_weights)
    loss = Loss(cfg.train.loss, cfg.train.charbonnier_eps)
    check_records(cfg, origin, info, sources, loss.needs_records)
    check_factors(cfg, origin, info, levels)
    dataset = PatchDataset(sources, levels, scale=cfg.data.train.scale, flip=cfg.data.train.flip,
                           rot=cfg.data.train.rot, degrade=cfg.data.train.degrade_on == "worker",
                           records=("record" in info.inputs or loss.needs_records)
                           and cfg.data.train.degrade_on == "worker")
    weighting = UncertaintyWeighting(len(levels)) if strategy.weights_loss else None
    epoch_steps = s.epoch_steps or max(1, math.ceil(len(sources[0]) / cfg.train.batch_size))
    if epoch_steps <= 0:
        raise _fail(origin, "strategy.epoch_steps", f"must be positive, got {epoch_steps}")
    return Prepared(cfg, origin, module, info, sources, levels, strategy, plan, dataset, validation,
                    loss, weighting, build_moa(cfg, origin), epoch_steps,
                    channels, trainable, lr_factors)


# ------------------------------------------------------------------------------------- pieces


@torch.no_grad()
def validate(model: Model, validation: list[ValLevel], device: torch.device, **conditions: Any) -> dict[str, float]:
    """Mean PSNR per validation level under the task's protocol (output clamped, then quantised), in fp32
    through `infer.run_model`, the code path of `restorekit eval`."""
    was_training = model.module.training
    model.module.eval()
    results = {}
    try:
        for level in validation:
            values = []
            for index, (degraded, target) in enumerate(level.pairs):
                record = {"record": level.records[index]} if level.records is not None else {}
                output = run_model(model, degraded, device, **conditions, **level.conditions, **record).clamp(0, 1)
                values.append(float(metrics.psnr_batch(output, target, level.protocol)))
            results[level.name] = float(np.mean(values))
    finally:
        model.module.train(was_training)
    return results


def make_loader(prepared: Prepared, start: int, stop: int, dist: Dist) -> DataLoader:
    train = prepared.cfg.data.train
    sampler = StepBatchSampler(prepared.plan, start, stop, dist.rank, dist.world)
    workers = train.workers
    return DataLoader(
        prepared.dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
        pin_memory=dist.device.type == "cuda", prefetch_factor=train.prefetch if workers else None,
        persistent_workers=False,
    )


def segment_end(step: int, total: int, prepared: Prepared) -> int:
    """Loaders run in segments that end where the strategy's state may change (on_demand: each epoch),
    so prefetching workers never see keys planned with stale shares."""
    if not prepared.strategy.needs_validation:
        return total
    return min(total, (step // prepared.epoch_steps + 1) * prepared.epoch_steps)


def save_weights(path: Path, model: nn.Module, architecture: str) -> Path:
    from safetensors.torch import save as save_bytes

    return write_bytes(path, save_bytes(state_dict_cpu(model), metadata={"architecture": architecture}))


def save_final(out: Path, model: nn.Module, card: ModelCard | dict) -> Path:
    """OUT/final.safetensors and its model card OUT/final.json (what the zoo rebuilds it from), the card
    carrying the weights' sha256 so that `--model OUT/final.safetensors` is verified like a zoo model."""
    from restorekit.zoo import sha256

    if isinstance(card, dict):
        card = ModelCard.model_validate({"name": out.name, **card})
    path = save_weights(out / "final.safetensors", model, card.architecture)
    write_card(out / "final.json", card.model_copy(update={"file": path.name, "sha256": sha256(path)}))
    return path


def cpu_threads(cfg: Config, dist: Dist) -> int:
    """Intra-op threads: the configured number, else the cores this process may use minus its loader
    workers (shared between torchrun processes). OpenMP threads that outnumber free cores spin-wait and
    make small models 10x slower, so erring low is the safe side."""
    if cfg.threads:
        return cfg.threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if dist.device.type == "cuda":
        return max(1, min(torch.get_num_threads(), cores // dist.world))
    return max(1, cores // dist.world - cfg.data.train.workers)


# ------------------------------------------------------------------------------------- the loop


def elastic_restart_count() -> int:
    """How often torchrun has restarted the workers (`--max-restarts`); 0 on the first attempt or without it."""
    try:
        return max(0, int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
    except ValueError:
        return 0


def train(cfg: Config, out: Path, dist: Dist, resume: str | None = None, progress_mode: str | None = None) -> dict:
    """Run (or continue) training; -> out, steps, val_psnr and this process's rank. Only rank 0 writes files."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, torch.get_num_threads())
    try:
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        torch.set_num_threads(cpu_threads(cfg, dist))
        return Session(cfg, Path(out), dist, progress_mode).run(resume)
    finally:  # a library call must not leave process-wide torch settings changed
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.benchmark = saved[1]
        torch.set_num_threads(saved[2])


class Session:
    """One `restorekit train`: its stages (one unless staged), outputs, log, TensorBoard and progress bar.
    Steps in logs and checkpoint names count over all stages; each stage counts its own from 0 inside."""

    def __init__(self, cfg: Config, out: Path, dist: Dist, progress_mode: str | None):
        self.cfg, self.out, self.dist, self.progress_mode = cfg, out, dist, progress_mode
        self.plans = plan_stages(cfg)
        self.offsets = np.cumsum([0] + [p.cfg.train.steps for p in self.plans]).tolist()
        self.total = self.offsets[-1]
        self.staged = cfg.recipe == "staged"

    # -- set-up -------------------------------------------------------------------------------------

    def _resume_state(self, resume: str | None) -> tuple[dict | None, Path | None]:
        """The checkpoint to continue from: `--resume PATH`; the newest good one for `--resume`, or for a
        torchrun restart (the agent re-executes the original command line, which may lack --resume); none
        for a fresh run. Rank 0 picks and every rank loads its choice, so all continue from the same step."""
        restart = elastic_restart_count()
        implied = resume is None and restart > 0
        if resume is None and not implied:
            return None, None
        if resume not in (None, "latest"):
            path = Path(resume)
            state = ckpt.load_checkpoint(path)
            self._announce(path, state, restart)
            return state, path
        picked, error = None, None
        if self.dist.main:
            try:
                picked = self._pick_latest(implied)
            except RestorekitError as err:
                error = str(err)
        name, error = broadcast_object((str(picked[1]) if picked else None, error), self.dist)
        if error is not None:
            raise RestorekitError(error)
        if name is None:
            return None, None
        state = picked[0] if picked else ckpt.load_checkpoint(Path(name))
        self._announce(Path(name), state, restart)
        return state, Path(name)

    def _pick_latest(self, implied: bool) -> tuple[dict, Path] | None:
        """Rank 0: (state, path) of the newest good checkpoint, or None to start from step 0.
        A restart resumes only a checkpoint of this very config: anything else in OUT predates this job
        (its first attempt had not yet cleared the folder), and the command line asked for a fresh run."""
        found = ckpt.load_latest_good(self.out)
        if found is None:
            print(f"restorekit: no checkpoint in {ckpt.checkpoint_dir(self.out)}; starting from step 0", flush=True)
            return None
        state, path = found
        stage = int(state.get("stage", 0))
        if implied and (stage >= len(self.plans) or state.get("config") != self.plans[stage].cfg.to_plain()):
            print(f"restorekit: {path} is from another config; starting from step 0", flush=True)
            return None
        return found

    def _announce(self, path: Path, state: dict, restart: int) -> None:
        if self.dist.main:
            prefix = f"torchrun restart {restart}: " if restart else ""
            print(f"restorekit: {prefix}resuming from {path} (step {int(state['step'])})", flush=True)

    def _open_outputs(self, fresh: bool, step: int) -> None:
        out, main = self.out, self.dist.main
        if main:
            out.mkdir(parents=True, exist_ok=True)
            if fresh:
                for stale in (out / "final.safetensors", out / "final.json"):
                    stale.unlink(missing_ok=True)
                ckpt.remove_all(out)
                shutil.rmtree(out / "tensorboard", ignore_errors=True)  # a fresh run: no stale curves
                shutil.rmtree(out / "stages", ignore_errors=True)
            write_bytes(out / "config.yaml", yaml.safe_dump(self.cfg.to_plain(), sort_keys=False).encode())
        self.log = JsonlLog(out / "log.jsonl", resume_step=None if fresh else step) if main else None
        self.board = TensorBoard(out / "tensorboard", self.cfg.logging.tensorboard and main,
                                 purge_step=None if fresh else step)
        mode = (self.progress_mode or self.cfg.logging.progress) if main else "off"
        self.bar = Progress(self.total, step, mode, self.cfg.name)

    # -- the run ------------------------------------------------------------------------------------

    def _check_later_stages(self, first: Prepared, index: int) -> None:
        """Prepare every later stage once before the first step (a typo in stage 3 must not wait for hours
        of stage 1), loading the previous stage's untrained state dict: same names and shapes as its
        trained one. The global RNGs are left as they were, so stage 1 trains as a separate run would."""
        previous = first.module.state_dict()
        with torch.random.fork_rng(devices=[]):
            for plan in self.plans[index + 1:]:
                previous = prepare(plan.cfg, self.dist, previous, plan.init_strict).module.state_dict()

    def run(self, resume: str | None) -> dict:
        state, path = self._resume_state(resume)
        first = int(state.get("stage", 0)) if state is not None else 0
        plan = self.plans[first]
        # Everything that can fail does so before any file is written.
        prepared = prepare(plan.cfg, self.dist, None, plan.init_strict)
        if state is not None and state["config"].get("model") != plan.cfg.to_plain().get("model"):
            raise ConfigError(f"{plan.cfg.origin}: model: differs from the checkpoint's ({path}); "
                              "resume with the same model section")
        self._check_later_stages(prepared, first)
        self._open_outputs(state is None, int(state["step"]) if state is not None else 0)
        weights, last_val = None, {}
        try:
            for index, plan in enumerate(self.plans):
                if index < first:
                    continue
                resuming = state is not None and index == first
                if index > first:
                    prepared = prepare(plan.cfg, self.dist, weights, plan.init_strict)
                recipe = RECIPES[plan.cfg.recipe](prepared, self.dist)
                start = self._restore(state, recipe) - self.offsets[index] if resuming else 0
                last_val = StageRun(self, index, plan, prepared, recipe).run(start)
                weights = state_dict_cpu(recipe.eval_module())
                if self.staged and self.dist.main:
                    save_weights(self.out / "stages" / f"{plan.name}.safetensors", recipe.eval_module(),
                                 plan.cfg.model.type)
            if self.dist.main:
                save_final(self.out, recipe.eval_module(), self._card(prepared, last_val))
            barrier(self.dist)
        finally:
            self.bar.close()
            self.board.close()
            if self.log is not None:
                self.log.close()
        return {"out": str(self.out), "steps": self.total, "val_psnr": last_val, "rank": self.dist.rank}

    def _restore(self, state: dict, recipe: Recipe) -> int:
        """Load a checkpoint into the recipe, strategy and RNGs; -> the global step it was taken at."""
        recipe.load_state_dict(state)
        recipe.prepared.strategy.load_state_dict(state.get("strategy", {}))
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[self.dist.rank] if len(rngs) == self.dist.world else rngs[0], self.dist.device)
        return int(state["step"])

    def _card(self, prepared: Prepared, last_val: dict[str, float]) -> ModelCard:
        cfg = prepared.cfg  # the last stage's: its model is the final one
        steps: int | dict[str, int] = {p.name: p.cfg.train.steps for p in self.plans} if self.staged else self.total
        levels = [lv.name for p in self.plans for lv in p.cfg.data.train.levels]
        training = Training(recipe=self.cfg.recipe, config="config.yaml", steps=steps, seed=self.cfg.seed,
                            ema=cfg.train.ema_decay > 0, strategy=cfg.strategy.type, val_psnr=last_val,
                            levels=list(dict.fromkeys(levels)))
        return ModelCard(name=self.cfg.name, architecture=cfg.model.type, arguments=dict(cfg.model.args),
                         task=cfg.task, training=training, restorekit_version=__version__,
                         grey=cfg.data.train.grey if prepared.channels == 1 else None)


class StageRun:
    """The steps of one stage: batches in, recipe steps, validation, log lines and checkpoints."""

    def __init__(self, session: Session, index: int, plan: StagePlan, prepared: Prepared, recipe: Recipe):
        self.session, self.index, self.plan, self.prepared, self.recipe = session, index, plan, prepared, recipe
        self.cfg, self.dist, self.device = plan.cfg, session.dist, session.dist.device
        self.offset = session.offsets[index]
        self.pipelines = [lv.pipeline for lv in prepared.levels]
        self.last_val: dict[str, float] = {}

    def batch(self, raw: dict, step: int) -> Batch:
        """Loader output on the device, degraded there (degrade_on: device) and mixed (MoA) as configured."""
        cfg, device, rank = self.cfg, self.device, self.dist.rank
        lq = raw["lq"].to(device, non_blocking=True)
        hq = raw["hq"].to(device, non_blocking=True)
        levels = raw["level"].to(device)
        records = raw.get("record")  # the workers' (degrade_on: worker), for a model that takes them
        if cfg.data.train.degrade_on == "device":
            g = torch.Generator(device=device).manual_seed(mix_seed(cfg.seed, "device", step, rank) % 2**63)
            records = [] if self.prepared.keeps_records else None
            lq = degrade_batch(self.pipelines, lq, levels, g, records)  # clean for spec levels, as loaded for paired
        # a desubpixel model takes the LR image nearest-upsampled (CutBlur's models): before MoA, so that
        # every member mixes at one resolution as the reference code does
        lq = upsample_input(lq, self.prepared.info.input_upsample)
        mask = None
        if self.prepared.moa is not None:
            rng = np.random.default_rng(mix_seed(cfg.seed, "moa", step, rank))
            lq, hq, mask, _ = self.prepared.moa(lq, hq, rng)
        return Batch(lq, hq, levels, mask, records)

    def validate(self) -> dict[str, float]:
        model = Model(self.recipe.eval_module(), self.prepared.info)
        result = validate(model, self.prepared.validation, self.device, **self.prepared.conditions) \
            if self.dist.main else None
        return broadcast_object(result, self.dist)

    def save_checkpoint(self, step: int) -> None:
        rngs = gather_objects(ckpt.rng_state(self.device), self.dist)
        if not self.dist.main:
            return
        global_step = self.offset + step
        state = {
            "step": global_step, "stage": self.index, "stage_name": self.plan.name, "recipe": self.cfg.recipe,
            "config": self.cfg.to_plain(), "world_size": self.dist.world, **self.recipe.state_dict(),
            "strategy": self.prepared.strategy.state_dict(), "rng": rngs,
            "data": {"next_step": step, "epoch": self.prepared.plan.epoch_of(step)},
        }
        ckpt.save_checkpoint(state, ckpt.checkpoint_path(self.session.out, global_step))
        ckpt.prune(self.session.out, self.cfg.train.keep_checkpoints)

    def run(self, step: int) -> dict[str, float]:
        """Train steps `step`..train.steps of this stage; -> the last validation PSNRs."""
        total, prepared = self.cfg.train.steps, self.prepared
        self.running, self.running_n = torch.zeros((), device=self.device), 0
        self.by_level: dict[str, list] = {}  # level name -> [loss sum, batches] of single-level batches since the log
        self.started, self.started_step = time.perf_counter(), step
        while step < total:
            stop = segment_end(step, total, prepared)
            for raw in make_loader(prepared, step, stop, self.dist):
                batch = self.batch(raw, step)
                with prepared.training_batch(raw["level"], batch.records):
                    losses = self.recipe.train_step(batch)
                step += 1
                self.note_level_loss(raw["level"], losses["loss"])
                self.after_step(step, losses)
                if self.cfg.train.checkpoint_every and step % self.cfg.train.checkpoint_every == 0 and step < total:
                    self.save_checkpoint(step)
                if step >= stop:
                    break
        self.save_checkpoint(step)
        return self.last_val

    def note_level_loss(self, levels: torch.Tensor, loss: torch.Tensor) -> None:
        """Per-level loss curves (the log's `loss_by_level`) from batches of one level, e.g. MBN's factor cycle."""
        if len(self.prepared.levels) < 2:  # one level: the log's loss already is its curve
            return
        names = levels.unique().tolist()
        if len(names) == 1:
            total = self.by_level.setdefault(self.prepared.levels[int(names[0])].name, [0.0, 0])
            total[0] = total[0] + loss.detach()
            total[1] += 1

    def after_step(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        """Validation (on schedule, or per epoch for strategies steered by it) and the log line."""
        cfg, prepared, total = self.cfg, self.prepared, self.cfg.train.steps
        self.running += losses["loss"]
        self.running_n += 1
        record: dict = {}
        if prepared.strategy.needs_validation and step % prepared.epoch_steps == 0:
            self.last_val = self.validate()
            prepared.strategy.update([self.last_val[v.name] for v in prepared.validation])
            record["val_psnr"] = self.last_val
            shares = prepared.strategy.shares(step).tolist()
            record["shares"] = dict(zip([lv.name for lv in prepared.levels], shares, strict=True))
        if ((cfg.data.val.every and step % cfg.data.val.every == 0) or step == total) and "val_psnr" not in record:
            self.last_val = self.validate()
            record["val_psnr"] = self.last_val
        global_step = self.offset + step
        if record or step % cfg.train.log_every == 0 or step == total:
            self.log_line(step, losses, record)
        else:
            self.session.bar.update(global_step)

    def log_line(self, step: int, losses: dict[str, torch.Tensor], record: dict) -> None:
        session, dist, prepared = self.session, self.dist, self.prepared
        values = {k: float(all_reduce_mean(v, dist)) for k, v in losses.items()}
        avg_loss = float(all_reduce_mean(self.running, dist)) / max(1, self.running_n)
        self.running.zero_()
        self.running_n = 0
        by_level = {name: float(total) / n for name, (total, n) in self.by_level.items()}
        self.by_level = {}
        elapsed = time.perf_counter() - self.started
        speed = (step - self.started_step) / elapsed if elapsed > 0 else 0.0
        global_step = self.offset + step
        entry = {"step": global_step, **values, "loss_avg": avg_loss, "lr": self.recipe.lr,
                 "it_per_s": round(speed, 3), "epoch": prepared.plan.epoch_of(step - 1), **record}
        if by_level:
            entry["loss_by_level"] = by_level
        if session.staged:
            entry["stage"] = self.plan.name
        if prepared.weighting is not None:
            weights = prepared.weighting.weights()
            entry["level_weights"] = dict(zip([lv.name for lv in prepared.levels], weights, strict=True))
        if dist.main:
            session.log.write(entry)
            scalars = {f"train/{k}": v for k, v in values.items()}
            scalars.update({"train/lr": entry["lr"], "train/it_per_s": speed})
            scalars.update({f"val/psnr/{k}": v for k, v in record.get("val_psnr", {}).items()})
            scalars.update({f"strategy/share/{k}": v for k, v in record.get("shares", {}).items()})
            session.board.scalars(scalars, global_step)
        mean_psnr = float(np.mean(list(self.last_val.values()))) if self.last_val else None
        session.bar.update(global_step, values["loss"], mean_psnr, speed)
