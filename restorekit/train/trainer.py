"""The training loop: one config in, `OUT/final.safetensors` (+ model card) out, resumable at any checkpoint.

`prepare` builds everything (model, images, degradation pipelines, strategy, validation inputs) and runs
every check that can fail, so a bad config stops before the first step with a message naming the file
and the key. `train` then runs the steps:

    plan keys (levels, images, seeds) -> workers crop/flip/degrade -> [MoA] -> model -> per-sample loss
    -> [uncertainty weighting] -> backward (DDP averages gradients) -> clip -> optimizer -> scheduler -> EMA

Reproducibility: every random choice of a step derives from (seed, step) (and the rank only for MoA),
the global batch is split over ranks by position, and checkpoints hold every state, so a rerun, a
resumed run and an N-process run agree (bit-exactly on CPU with `deterministic: true`).
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from restorekit import __version__, evaluation, metrics, paths
from restorekit.data.augment import MoA
from restorekit.data.datasets import Level, PatchDataset, degrade_batch
from restorekit.data.samplers import LevelStrategy, StepBatchSampler, StepPlan, build_strategy, mix_seed
from restorekit.data.sources import ImageSet, center_crop, load_folder, load_skimage, synthesize, to_tensor
from restorekit.errors import ConfigError, RestorekitError
from restorekit.infer import is_modulated, run_model
from restorekit.train import checkpoint as ckpt
from restorekit.train.config import Node
from restorekit.train.distributed import (
    Dist,
    all_reduce_mean,
    average_gradients,
    barrier,
    broadcast_object,
    gather_objects,
)
from restorekit.train.losses import Loss, UncertaintyWeighting
from restorekit.train.monitor import JsonlLog, Progress, TensorBoard

# ------------------------------------------------------------------------------------- start-up


@dataclass
class ValLevel:
    name: str
    pairs: list[tuple[torch.Tensor, torch.Tensor]]  # (degraded input, target) per image
    protocol: metrics.Protocol


@dataclass
class Prepared:
    """Everything built and checked at start-up."""

    cfg: Node
    origin: str
    model: nn.Module
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
    trainable: list[str] = field(default_factory=list)


def _fail(origin: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{origin}: {key}: {message}")


def build_model(cfg: Node, origin: str) -> nn.Module:
    from restorekit.models import create_model, list_models

    if cfg.model.type not in list_models():
        raise _fail(origin, "model.type", f"unknown model {cfg.model.type!r}; registered: {', '.join(list_models())}")
    try:
        model = create_model(cfg.model.type, **cfg.model.args)
    except TypeError as err:
        raise _fail(origin, "model.args", f"{cfg.model.type}: {err}") from None
    if cfg.model.init:
        from restorekit.zoo import load_state_dict

        try:
            state = load_state_dict(Path(cfg.model.init).expanduser())
            missing, unexpected = model.load_state_dict(state, strict=cfg.model.init_strict)
        except RestorekitError as err:
            raise _fail(origin, "model.init", str(err)) from None
        except RuntimeError as err:
            raise _fail(origin, "model.init", f"does not fit {cfg.model.type}: {str(err).splitlines()[0]}") from None
    if cfg.model.strength is not None:
        if not is_modulated(model):
            raise _fail(origin, "model.strength", f"{cfg.model.type} has no strength control")
        if not 0.0 <= cfg.model.strength <= 1.0:
            raise _fail(origin, "model.strength", f"must be in [0, 1], got {cfg.model.strength}")
        model.set_strength(cfg.model.strength)
    return model


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


def load_source(section: Node, key: str, origin: str, channels: int | None, folder: str | None = None,
                grey: str = "luma") -> ImageSet:
    """Images of a data section (or of one level's own folder); `grey`: how RGB becomes 1 channel."""
    try:
        if folder is not None or section.source == "folder":
            name = folder if folder is not None else section.folder
            if not name:
                raise _fail(origin, f"{key}.folder", "source 'folder' needs a folder (a path or a benchmark name)")
            try:
                path = paths.resolve_dataset(name)
            except RestorekitError as err:
                raise _fail(origin, f"{key}.folder" if folder is None else key, str(err)) from None
            return load_folder(path, channels, section.limit, grey)
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


def build_levels(cfg: Node, origin: str, channels: int | None) -> tuple[list[ImageSet], list[Level]]:
    train = cfg.data.train
    sources: list[ImageSet] = [load_source(train, "data.train", origin, channels, grey=train.grey)]
    levels = []
    for i, entry in enumerate(train.levels):
        key = f"data.train.levels[{i}]"
        source = 0
        if entry["folder"]:
            sources.append(load_source(train, f"{key}.folder", origin, channels, folder=entry["folder"],
                                       grey=train.grey))
            source = len(sources) - 1
        paired = sources[source].paired
        if paired and entry["spec"]:
            raise _fail(origin, key, "a paired folder (degraded/ + clean/) provides the inputs; use null as its spec")
        if not paired and not entry["spec"]:
            raise _fail(origin, key, "needs a degradation spec (e.g. 'noise:sigma=25'): the images are clean")
        pipeline = parse_level_spec(entry["spec"], key, origin) if entry["spec"] else None
        patch = entry["patch"] or train.patch
        scale = sources[source].scale if paired else train.scale
        if patch % scale:
            raise _fail(origin, "data.train.patch", f"{patch} is not a multiple of the scale {scale}")
        smallest = sources[source].min_side()
        if patch > smallest:
            raise _fail(origin, "data.train.patch", f"{patch} is larger than the smallest training image "
                        f"({smallest} px) of {sources[source].origin}")
        levels.append(Level(entry["name"], entry["spec"], source, patch, pipeline))
    if len({lv.patch for lv in levels}) > 1 and cfg.strategy.type not in ("single", "mbn_cycle"):
        raise _fail(origin, "data.train.levels", "levels with different patch sizes need strategy single or "
                    "mbn_cycle (every batch must hold one patch size)")
    return sources, levels


def build_validation(cfg: Node, origin: str, channels: int | None) -> list[ValLevel]:
    val = cfg.data.val
    images = load_source(val, "data.val", origin, channels, grey=val.grey or cfg.data.train.grey)
    scale = cfg.data.train.scale
    entries = val.levels if val.levels is not None else cfg.data.train.levels
    key_base = "data.val.levels" if val.levels is not None else "data.train.levels"
    out = []
    for i, entry in enumerate(entries):
        key = f"{key_base}[{i}]"
        if images.paired:  # the folder provides the inputs: one validation level
            protocol = evaluation.default_setup(cfg.task, scale=images.scale if cfg.task == "sr" else None).protocol
            crop_lq = val.crop // images.scale if val.crop else None
            pairs = [(to_tensor(center_crop(d, crop_lq)), to_tensor(center_crop(c, val.crop)))
                     for d, c in zip(images.degraded, images.clean)]
            out.append(ValLevel("paired", pairs, protocol))
            break
        if not entry["spec"]:
            raise _fail(origin, key, "validation on clean images needs a degradation spec")
        parse_level_spec(entry["spec"], key, origin)
        try:
            setup = evaluation.default_setup(cfg.task, scale=scale if (scale > 1 or cfg.task == "sr") else None,
                                             degrade=entry["spec"], seed=val.seed, seed_mode="name")
            pairs = []
            for name, array in zip(images.names, images.clean):
                clean = to_tensor(center_crop(array, val.crop))
                pairs.append(evaluation.make_input(clean, name, setup))
        except RestorekitError as err:
            raise _fail(origin, key, str(err)) from None
        out.append(ValLevel(entry["name"], pairs, setup.protocol))
    return out


def model_channels(model: nn.Module) -> int | None:
    info = getattr(model, "info", None)
    return getattr(info, "in_channels", None)


def prepare(cfg: Node, dist: Dist) -> Prepared:
    """Build and check everything; raises ConfigError (naming file and key) before any training."""
    origin = getattr(cfg, "origin", "<config>")
    if cfg.train.amp != "none" and dist.device.type != "cuda":
        raise _fail(origin, "train.amp", f"{cfg.train.amp} needs a CUDA device; this run is on {dist.device}")
    for key in ("steps", "batch_size", "log_every", "data.train.patch", "data.train.scale"):
        section, name = (cfg.train, key) if "." not in key else (cfg.data.train, key.split(".")[-1])
        if section[name] <= 0:
            raise _fail(origin, key if "." in key else f"train.{key}", f"must be positive, got {section[name]}")
    if cfg.train.batch_size % dist.world:
        raise _fail(origin, "train.batch_size", f"{cfg.train.batch_size} does not split evenly over {dist.world} "
                    "processes (it is the global batch)")
    milestones = cfg.train.scheduler.milestones
    if milestones != sorted(milestones):
        raise _fail(origin, "train.scheduler.milestones", f"must be increasing, got {milestones}")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, origin)
    trainable = apply_freezing(model, cfg.model.freeze, cfg.model.train_only, origin)
    channels = cfg.data.train.channels or model_channels(model)
    if model_channels(model) and cfg.data.train.channels and cfg.data.train.channels != model_channels(model):
        raise _fail(origin, "data.train.channels", f"{cfg.data.train.channels}, but {cfg.model.type} takes "
                    f"{model_channels(model)}-channel images")
    sources, levels = build_levels(cfg, origin, channels)
    val_channels = cfg.data.val.channels or channels
    validation = build_validation(cfg, origin, val_channels)
    s = cfg.strategy
    if s.type == "mbn_cycle" and (s.cycle is None or len(s.cycle) != len(levels)):
        raise _fail(origin, "strategy.cycle", f"mbn_cycle needs one count per level ({len(levels)}), got {s.cycle}")
    if s.type == "on_demand" and len(validation) != len(levels):
        raise _fail(origin, "data.val.levels", f"on_demand needs one validation level per training level "
                    f"({len(levels)}), got {len(validation)}")
    strategy = build_strategy(s.type, len(levels), level=s.level, total_steps=cfg.train.steps,
                              curriculum=s.curriculum, cycle=s.cycle, seed=cfg.seed)
    plan = StepPlan(strategy, [lv.source for lv in levels], [len(src) for src in sources],
                    cfg.train.batch_size, cfg.seed)
    scale = cfg.data.train.scale
    dataset = PatchDataset(sources, levels, scale=scale, flip=cfg.data.train.flip, rot=cfg.data.train.rot,
                           degrade=cfg.data.train.degrade_on == "worker")
    loss = Loss(cfg.train.loss, cfg.train.charbonnier_eps)
    weighting = UncertaintyWeighting(len(levels)) if strategy.weights_loss else None
    moa = None
    if cfg.augment.moa:
        a = cfg.augment.alpha
        try:
            moa = MoA(tuple(cfg.augment.augs), cfg.augment.p, tuple(cfg.augment.mix_p) if cfg.augment.mix_p else None,
                      {"blend": a.blend, "mixup": a.mixup, "cutout": a.cutout, "cutmix": a.cutmix,
                       "cutmixup": a.cutmixup, "cutblur": a.cutblur}, a.cutmixup_mixup)
        except ValueError as err:
            raise _fail(origin, "augment", str(err)) from None
    epoch_steps = s.epoch_steps or max(1, math.ceil(len(sources[0]) / cfg.train.batch_size))
    if epoch_steps <= 0:
        raise _fail(origin, "strategy.epoch_steps", f"must be positive, got {epoch_steps}")
    return Prepared(cfg, origin, model, sources, levels, strategy, plan, dataset, validation, loss, weighting, moa,
                    epoch_steps, trainable)


# ------------------------------------------------------------------------------------- pieces


def lr_factor(step: int, sched: Node, total: int, base_lr: float) -> float:
    """Multiplier of the base lr at `step` (0-based): linear warm-up, then constant / multistep / cosine."""
    if sched.warmup_steps and step < sched.warmup_steps:
        return (step + 1) / sched.warmup_steps
    if sched.type == "multistep":
        return sched.gamma ** sum(1 for m in sched.milestones if step >= m)
    if sched.type == "cosine":
        span = max(1, total - sched.warmup_steps)
        t = min(1.0, (step - sched.warmup_steps) / span)
        floor = sched.eta_min / base_lr if base_lr else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def build_optimizer(cfg: Node, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.train.optimizer
    kind = torch.optim.AdamW if o.type == "adamw" else torch.optim.Adam
    return kind(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


def clip_gradients(params: list[nn.Parameter], norm: float = 0.0, value: float = 0.0) -> None:
    """Global-norm clipping, then per-value clipping (RCAN fine-tuning: value 0.5); 0 turns either off."""
    if norm > 0:
        torch.nn.utils.clip_grad_norm_(params, norm)
    if value > 0:
        torch.nn.utils.clip_grad_value_(params, value)


class EMA:
    """Exponential moving average of the weights (BasicSR/KAIR's `net_g_ema`, decay 0.999 there)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


@torch.no_grad()
def validate(model: nn.Module, validation: list[ValLevel], device: torch.device) -> dict[str, float]:
    """Mean PSNR per validation level under the task's protocol (output clamped, then quantised)."""
    was_training = model.training
    model.eval()
    results = {}
    try:
        for level in validation:
            values = []
            for degraded, target in level.pairs:
                output = run_model(model, degraded, device).clamp(0, 1)
                values.append(float(metrics.psnr_batch(output, target, level.protocol)))
            results[level.name] = float(np.mean(values))
    finally:
        model.train(was_training)
    return results


def make_loader(prepared: Prepared, start: int, stop: int, dist: Dist) -> DataLoader:
    train = prepared.cfg.data.train
    sampler = StepBatchSampler(prepared.plan, start, stop, dist.rank, dist.world)
    workers = train.workers
    return DataLoader(
        prepared.dataset, batch_sampler=sampler, num_workers=workers,
        pin_memory=dist.device.type == "cuda", prefetch_factor=train.prefetch if workers else None,
        persistent_workers=False,
    )


def segment_end(step: int, total: int, prepared: Prepared) -> int:
    """Loaders run in segments that end where the strategy's state may change (on_demand: each epoch),
    so prefetching workers never see keys planned with stale shares."""
    if not prepared.strategy.needs_validation:
        return total
    return min(total, (step // prepared.epoch_steps + 1) * prepared.epoch_steps)


def state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_final(out: Path, model: nn.Module, card: dict) -> Path:
    """OUT/final.safetensors and its model card OUT/final.json (what zoo.load_model rebuilds it from)."""
    from safetensors.torch import save as save_bytes

    data = save_bytes(state_dict_cpu(model), metadata={"architecture": card["architecture"]})
    path = ckpt.atomic_write(out / "final.safetensors", lambda handle: handle.write(data))
    text = (json.dumps(card, indent=2) + "\n").encode()
    ckpt.atomic_write(out / "final.json", lambda handle: handle.write(text))
    return path


def cpu_threads(cfg: Node, dist: Dist) -> int:
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


def train(cfg: Node, out: Path, dist: Dist, resume: str | None = None, progress_mode: str | None = None) -> dict:
    """Run (or continue) training; returns a summary. Only rank 0 writes files."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, torch.get_num_threads())
    try:
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        torch.set_num_threads(cpu_threads(cfg, dist))
        return _train(cfg, Path(out), dist, resume, progress_mode)
    finally:  # a library call must not leave process-wide torch settings changed
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.benchmark = saved[1]
        torch.set_num_threads(saved[2])


def _train(cfg: Node, out: Path, dist: Dist, resume: str | None, progress_mode: str | None) -> dict:
    prepared = prepare(cfg, dist)
    device = dist.device
    model = prepared.model.to(device)
    raw_model = model
    total = cfg.train.steps

    params = [p for p in model.parameters() if p.requires_grad]
    extra_params = list(prepared.weighting.parameters()) if prepared.weighting is not None else []
    if prepared.weighting is not None:
        prepared.weighting.to(device)
    optimizer = build_optimizer(cfg, params + extra_params)
    base_lr = cfg.train.optimizer.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.train.scheduler, total, base_lr))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp == "fp16")
    ema = EMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None

    step = 0
    resume_path = None
    if resume:
        resume_path = Path(resume) if resume != "latest" else ckpt.latest_checkpoint(out)
    if resume_path is not None:
        state = ckpt.load_checkpoint(resume_path)
        if state["config"].get("model") != cfg.to_plain().get("model"):
            raise ConfigError(f"{prepared.origin}: model: differs from the checkpoint's ({resume_path}); "
                              "resume with the same model section")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema") is not None:
            ema.model.load_state_dict(state["ema"])
        if prepared.weighting is not None and state.get("weighting") is not None:
            prepared.weighting.load_state_dict(state["weighting"])
        prepared.strategy.load_state_dict(state.get("strategy", {}))
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[dist.rank] if len(rngs) == dist.world else rngs[0], device)
        step = int(state["step"])
    elif dist.main and resume:
        print(f"restorekit: no checkpoint in {ckpt.checkpoint_dir(out)}; starting from step 0")

    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_path is None:
            for stale in (out / "final.safetensors", out / "final.json"):
                stale.unlink(missing_ok=True)
            for _, old in ckpt.list_checkpoints(out):
                old.unlink()
            shutil.rmtree(out / "tensorboard", ignore_errors=True)  # a fresh run: no stale curves
        config_text = yaml.safe_dump(cfg.to_plain(), sort_keys=False).encode()
        ckpt.atomic_write(out / "config.yaml", lambda handle: handle.write(config_text))

    train_model: nn.Module = model
    if dist.active:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.model.compile:
        train_model = torch.compile(train_model)

    log = JsonlLog(out / "log.jsonl", resume_step=step if resume_path else None) if dist.main else None
    board = TensorBoard(out / "tensorboard", cfg.logging.tensorboard and dist.main,
                        purge_step=step if resume_path else None)
    bar = Progress(total, step, (progress_mode or cfg.logging.progress) if dist.main else "off", cfg.name)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp)
    pipelines = [lv.pipeline for lv in prepared.levels]
    last_val: dict[str, float] = {}
    running, running_n = torch.zeros((), device=device), 0
    started, started_step = time.perf_counter(), step

    def eval_model() -> nn.Module:
        return ema.model if ema is not None else raw_model

    def run_validation() -> dict[str, float]:
        result = validate(eval_model(), prepared.validation, device) if dist.main else None
        return broadcast_object(result, dist)

    def save_checkpoint_now() -> None:
        rngs = gather_objects(ckpt.rng_state(device), dist)
        if not dist.main:
            return
        state = {
            "step": step, "config": cfg.to_plain(), "world_size": dist.world,
            "model": state_dict_cpu(raw_model), "ema": state_dict_cpu(ema.model) if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "strategy": prepared.strategy.state_dict(),
            "weighting": prepared.weighting.state_dict() if prepared.weighting is not None else None,
            "rng": rngs, "data": {"next_step": step, "epoch": prepared.plan.epoch_of(step)},
        }
        ckpt.save_checkpoint(state, ckpt.checkpoint_path(out, step))
        ckpt.prune(out, cfg.train.keep_checkpoints)

    train_model.train()
    try:
        while step < total:
            stop = segment_end(step, total, prepared)
            for batch in make_loader(prepared, step, stop, dist):
                lq = batch["lq"].to(device, non_blocking=True)
                hq = batch["hq"].to(device, non_blocking=True)
                levels = batch["level"].to(device)
                if cfg.data.train.degrade_on == "device":
                    g = torch.Generator(device=device).manual_seed(mix_seed(cfg.seed, "device", step, dist.rank) % 2**63)
                    lq = degrade_batch(pipelines, lq, levels, g)  # clean for spec levels, as loaded for paired
                mask = None
                if prepared.moa is not None:
                    rng = np.random.default_rng(mix_seed(cfg.seed, "moa", step, dist.rank))
                    lq, hq, mask, _ = prepared.moa(lq, hq, rng)
                autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None
                            else contextlib.nullcontext())
                with autocast:
                    pred = train_model(lq)
                per_sample = prepared.loss(pred, hq, mask)
                if prepared.weighting is not None:
                    loss = prepared.weighting(per_sample, levels)
                else:
                    loss = per_sample.mean()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                average_gradients(extra_params, dist)
                if cfg.train.grad_clip_norm > 0 or cfg.train.grad_clip_value > 0:
                    scaler.unscale_(optimizer)
                    clip_gradients(params, cfg.train.grad_clip_norm, cfg.train.grad_clip_value)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update(raw_model)
                step += 1
                running += loss.detach()
                running_n += 1

                record: dict = {}
                if prepared.strategy.needs_validation and step % prepared.epoch_steps == 0:
                    last_val = run_validation()
                    prepared.strategy.update([last_val[v.name] for v in prepared.validation])
                    record["val_psnr"] = last_val
                    record["shares"] = dict(zip([lv.name for lv in prepared.levels],
                                                prepared.strategy.shares(step).tolist()))
                if (cfg.data.val.every and step % cfg.data.val.every == 0) or step == total:
                    if "val_psnr" not in record:
                        last_val = run_validation()
                        record["val_psnr"] = last_val
                if record or step % cfg.train.log_every == 0 or step == total:
                    step_loss = float(all_reduce_mean(loss.detach(), dist))
                    avg_loss = float(all_reduce_mean(running, dist)) / max(1, running_n)
                    running.zero_()
                    running_n = 0
                    elapsed = time.perf_counter() - started
                    speed = (step - started_step) / elapsed if elapsed > 0 else 0.0
                    entry = {"step": step, "loss": step_loss, "loss_avg": avg_loss,
                             "lr": optimizer.param_groups[0]["lr"], "it_per_s": round(speed, 3),
                             "epoch": prepared.plan.epoch_of(step - 1), **record}
                    if prepared.weighting is not None:
                        entry["level_weights"] = dict(zip([lv.name for lv in prepared.levels],
                                                          prepared.weighting.weights()))
                    if dist.main:
                        log.write(entry)
                        scalars = {"train/loss": step_loss, "train/lr": entry["lr"], "train/it_per_s": speed}
                        scalars.update({f"val/psnr/{k}": v for k, v in record.get("val_psnr", {}).items()})
                        scalars.update({f"strategy/share/{k}": v for k, v in record.get("shares", {}).items()})
                        board.scalars(scalars, step)
                    mean_psnr = float(np.mean(list(last_val.values()))) if last_val else None
                    bar.update(step, step_loss, mean_psnr, speed)
                else:
                    bar.update(step)
                if cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0 and step < total:
                    save_checkpoint_now()
                if step >= stop:
                    break
        save_checkpoint_now()
        card = {
            "architecture": cfg.model.type, "arguments": dict(cfg.model.args), "task": cfg.task, "name": cfg.name,
            "steps": total, "seed": cfg.seed, "ema": ema is not None, "strategy": cfg.strategy.type,
            "levels": [lv.name for lv in prepared.levels], "val_psnr": last_val,
            "config": "config.yaml", "restorekit_version": __version__,
        }
        if (cfg.data.train.channels or model_channels(prepared.model)) == 1:
            card["grey"] = cfg.data.train.grey  # how RGB test images become its input (eval reads it)
        if dist.main:
            save_final(out, eval_model(), card)
        barrier(dist)
    finally:
        bar.close()
        board.close()
        if log is not None:
            log.close()
    return {"out": str(out), "steps": total, "val_psnr": last_val}
