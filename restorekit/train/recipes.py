"""Training recipes: how the networks of a run learn from one batch, separate from the loop that feeds them.

The loop (`trainer.py`) owns data, validation, logging and checkpoints; a recipe owns networks, optimisers
and the update of one step. Four ship:

* `Supervised`: one network, `train.loss` (the default; every config before recipes were split out).
* `Adversarial`: generator + discriminator (`adversarial` section; the networks in `discriminators.py`: a
  PatchGAN or PCARN's, optionally as a multi-scale pyramid), two optimisers with their own schedules;
  the generator minimises `train.loss + adversarial.weight * GAN loss` (PCARN: train.loss = vgg54).
* `Recurrent`: R-MBN's step 2, a model with recurrent paths (mbn) learning 0.8 x loss(its own factor's step)
  + 0.2 x loss(the last step).
* `Staged` (`recipe: staged` + `stages`): a list of stages run one after the other, each a full config
  derived from the base one (its own levels, frozen parameters, losses, strength, steps, model arguments),
  each starting from the previous stage's final weights: AdaFM basic -> adaptation, MBN joint -> recurrent.
  It is expressed as configs, not as a step rule, so that a staged run is, step for step, the separate
  runs it replaces (tested bit-exact on CPU).

A new per-step recipe is a `Recipe` subclass registered with `@register_recipe("name")`: it builds its
networks in `__init__` from the `Prepared` run, implements `train_step(batch) -> {"loss": ...}`,
`eval_module()` (what validation and the final weights use) and `state_dict`/`load_state_dict` (everything
a bit-exact resume needs). `recipe: name` in a config (or a stage) then selects it.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from restorekit.data.samplers import mix_seed
from restorekit.distributed import Dist, average_gradients
from restorekit.errors import ConfigError
from restorekit.train.config import Config, Optimizer, Scheduler, apply_override, validate_config
from restorekit.train.discriminators import build_discriminator

if TYPE_CHECKING:
    from restorekit.train.trainer import Prepared

# ------------------------------------------------------------------------------------ optimisation


def lr_factor(step: int, sched: Scheduler, total: int, base_lr: float) -> float:
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


def build_optimizer(o: Optimizer, params: list[nn.Parameter], factors: list[float] | None = None
                    ) -> torch.optim.Optimizer:
    """`factors`: an lr multiplier per parameter (model.lr_factors); parameters with one factor share a param
    group, the largest factor's first (the lr the logs show)."""
    kind = torch.optim.AdamW if o.type == "adamw" else torch.optim.Adam
    groups: dict[float, list[nn.Parameter]] = {}
    for param, factor in zip(params, factors or [1.0] * len(params), strict=True):
        groups.setdefault(factor, []).append(param)
    return kind([{"params": group, "lr": o.lr * factor} for factor, group in sorted(groups.items(), reverse=True)],
                lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


def clip_gradients(params: list[nn.Parameter], norm: float = 0.0, value: float = 0.0) -> None:
    """Global-norm clipping, then per-value clipping (RCAN fine-tuning: value 0.5); 0 turns either off."""
    if norm > 0:
        torch.nn.utils.clip_grad_norm_(params, norm)
    if value > 0:
        torch.nn.utils.clip_grad_value_(params, value)


class Optimised:
    """One optimiser with its lr schedule, fp16 loss scaler and clipping: what each trained network of a
    recipe needs to take a step (the adversarial recipe has two)."""

    def __init__(self, params: list[nn.Parameter], optimizer: Optimizer, scheduler: Scheduler, total: int,
                 cfg: Config, extra: list[nn.Parameter] = (), clip: tuple[float, float] | None = None,
                 factors: list[float] | None = None):
        self.params, self.extra = params, list(extra)  # extra: not DDP-managed, averaged here (uncertainty)
        factors = None if factors is None else [*factors, *[1.0] * len(self.extra)]  # lr multiplier per param
        self.optimizer = build_optimizer(optimizer, params + self.extra, factors)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, scheduler, total, optimizer.lr))
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp == "fp16")
        self.clip = clip or (cfg.train.grad_clip_norm, cfg.train.grad_clip_value)  # (norm, value)

    def update(self, loss: torch.Tensor, dist: Dist) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        average_gradients(self.extra, dist)
        if any(c > 0 for c in self.clip):
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.params, *self.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self, prefix: str = "") -> dict:
        return {f"{prefix}optimizer": self.optimizer.state_dict(), f"{prefix}scheduler": self.scheduler.state_dict(),
                f"{prefix}scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None}

    def load_state_dict(self, state: dict, prefix: str = "") -> None:
        self.optimizer.load_state_dict(state[f"{prefix}optimizer"])
        self.scheduler.load_state_dict(state[f"{prefix}scheduler"])
        if state.get(f"{prefix}scaler"):
            self.scaler.load_state_dict(state[f"{prefix}scaler"])


class EMA:
    """Exponential moving average of the weights (BasicSR/KAIR's `net_g_ema`) on torch's `AveragedModel`.

    Same numbers as the hand-written EMA it replaced: AveragedModel's first update copies, so it is made
    at construction (the average starts at the initial weights and the first training step already
    blends, as BasicSR's), and buffers (BatchNorm statistics) are copied from the model, not averaged."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
        self.averaged.update_parameters(model)
        self.averaged.eval()
        for p in self.averaged.parameters():
            p.requires_grad_(False)

    @property
    def model(self) -> nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


# ------------------------------------------------------------------------------------ recipes


@dataclass
class Batch:
    lq: torch.Tensor
    hq: torch.Tensor
    levels: torch.Tensor  # level index per sample
    mask: torch.Tensor | None = None  # 1 = pixel counts in the loss (cutout)
    records: list | None = None  # each sample's degradation record, for a model that takes it (DL-Net)


def state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def wrap(module: nn.Module, dist: Dist, compile_: bool = False) -> nn.Module:
    """DDP over torchrun processes (gradients averaged), then optionally torch.compile."""
    if dist.active:
        device = dist.device
        module = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(module) if compile_ else module


def autocast(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast over fp32 master weights (`train.amp`); the loss is computed in fp32."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp)
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype else contextlib.nullcontext()


class Recipe:
    """Networks, optimisers and the update of one step. Subclasses: `__init__`, `train_step`,
    `eval_module`, `state_dict`/`load_state_dict` (see the module docstring)."""

    def __init__(self, prepared: Prepared, dist: Dist):
        self.prepared, self.cfg, self.dist, self.device = prepared, prepared.cfg, dist, dist.device

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def eval_module(self) -> nn.Module:
        raise NotImplementedError

    @property
    def lr(self) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


RECIPES: dict[str, type[Recipe]] = {}


def register_recipe(name: str) -> Callable[[type[Recipe]], type[Recipe]]:
    def decorator(cls: type[Recipe]) -> type[Recipe]:
        if name in RECIPES or name == "staged":
            raise ValueError(f"recipe {name!r} exists already")
        RECIPES[name] = cls
        return cls
    return decorator


def recipe_names() -> list[str]:
    """What `recipe:` may name: the per-step recipes and `staged`."""
    return [*RECIPES, "staged"]


@register_recipe("supervised")
class Supervised(Recipe):
    """One network learns `train.loss` (per sample, optionally weighted per level) on the batch."""

    def __init__(self, prepared: Prepared, dist: Dist):
        super().__init__(prepared, dist)
        cfg = self.cfg
        self.net = prepared.module.to(self.device)
        if cfg.train.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.train_net = wrap(self.net, dist, cfg.model.compile)
        self.weighting = prepared.weighting.to(self.device) if prepared.weighting is not None else None
        named = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]
        params, factors = [p for _, p in named], [prepared.lr_factors.get(n, 1.0) for n, _ in named]
        extra = list(self.weighting.parameters()) if self.weighting is not None else []
        self.g = Optimised(params, cfg.train.optimizer, cfg.train.scheduler, cfg.train.steps, cfg, extra,
                           factors=factors)
        self.ema = EMA(self.net, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        self.net.train()

    @property
    def conditions(self) -> dict[str, Any]:
        """Call arguments of the forward: the configured strength of a modulated model."""
        return self.prepared.conditions

    def generate(self, lq: torch.Tensor) -> torch.Tensor:
        if self.cfg.train.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        with autocast(self.cfg, self.device):
            return self.train_net(lq, **self.conditions)

    def pixel_loss(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        # fp32 (Loss casts); the records and degraded input for a term that reads them (naive likelihood)
        per_sample = self.prepared.loss(pred, batch.hq, batch.mask, records=batch.records, lq=batch.lq)
        return self.weighting(per_sample, batch.levels) if self.weighting is not None else per_sample.mean()

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self.pixel_loss(self.generate(batch.lq), batch)
        self.g.update(loss, self.dist)
        if self.ema is not None:
            self.ema.update(self.net)
        return {"loss": loss.detach()}

    def eval_module(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.net

    @property
    def lr(self) -> float:
        return self.g.lr

    def state_dict(self) -> dict:
        return {"model": state_dict_cpu(self.net), "ema": state_dict_cpu(self.ema.model) if self.ema else None,
                **self.g.state_dict(),
                "weighting": self.weighting.state_dict() if self.weighting is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        self.g.load_state_dict(state)
        if self.ema is not None and state.get("ema") is not None:
            self.ema.model.load_state_dict(state["ema"])
        if self.weighting is not None and state.get("weighting") is not None:
            self.weighting.load_state_dict(state["weighting"])


def gan_loss(kind: str, logits: torch.Tensor, real: bool) -> torch.Tensor:
    """vanilla: BCE of sigmoid(logits) (the discriminators' Sigmoid lives here); lsgan: squares."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def pyramid_gan_loss(kind: str, logits: list[torch.Tensor], real: bool) -> torch.Tensor:
    """The multi-scale discriminator's loss: the sum over its pyramid levels (thesis Eq. 2.6)."""
    return torch.stack([gan_loss(kind, level.float(), real) for level in logits]).sum()


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No gradients into `module` (the discriminator while the generator learns through it)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


@register_recipe("adversarial")
class Adversarial(Supervised):
    """Generator + discriminator (SRGAN/ESRGAN's scheme): per step the generator minimises
    `train.loss + weight * GAN(D(G(x)), real)`, then the discriminator `GAN(D(y), real) + GAN(D(G(x)), fake)`
    (halved), each with its own optimiser and schedule (`adversarial.optimizer/scheduler`). D is a pyramid
    (`adversarial.discriminator.scales`) whose per-level GAN losses are summed."""

    def __init__(self, prepared: Prepared, dist: Dist):
        super().__init__(prepared, dist)
        a = self.cfg.adversarial
        d = a.discriminator
        with torch.random.fork_rng(devices=[]):  # the discriminator's init leaves the generator's seeds alone
            torch.manual_seed(mix_seed(self.cfg.seed, "discriminator") % 2**63)
            self.disc = build_discriminator(d.type, prepared.channels or 3, d.features, d.depth, d.scales)
        smallest = min(level.patch // level.target_down for level in prepared.levels)  # the target patches D sees
        if smallest < self.disc.min_side:
            raise ConfigError(f"{prepared.origin}: adversarial.discriminator: the {d.type} discriminator at scales "
                              f"{d.scales} needs target patches of at least {self.disc.min_side} px; the smallest "
                              f"is {smallest}")
        self.disc.to(self.device).train()
        self.train_disc = wrap(self.disc, dist)
        clip = (self.cfg.train.grad_clip_norm if a.grad_clip_norm is None else a.grad_clip_norm,
                self.cfg.train.grad_clip_value)
        self.d = Optimised(list(self.disc.parameters()), a.optimizer, a.scheduler, self.cfg.train.steps, self.cfg,
                           clip=clip)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        a = self.cfg.adversarial
        pred = self.generate(batch.lq)
        pixel = self.pixel_loss(pred, batch)
        with frozen(self.disc), autocast(self.cfg, self.device):  # the raw module: no DDP hooks in this pass
            (fake_logits,) = self.disc(pred)
        g_loss = pixel + a.weight * pyramid_gan_loss(a.gan_loss, fake_logits, True)
        self.g.update(g_loss, self.dist)
        with autocast(self.cfg, self.device):  # real and fake in one call: one DDP forward per backward
            real_logits, fake_logits = self.train_disc(batch.hq, pred.detach())
        d_loss = 0.5 * (pyramid_gan_loss(a.gan_loss, real_logits, True)
                        + pyramid_gan_loss(a.gan_loss, fake_logits, False))
        self.d.update(d_loss, self.dist)
        if self.ema is not None:
            self.ema.update(self.net)
        return {"loss": g_loss.detach(), "pixel_loss": pixel.detach(), "d_loss": d_loss.detach()}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "discriminator": state_dict_cpu(self.disc), **self.d.state_dict("d_")}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.disc.load_state_dict(state["discriminator"])
        self.d.load_state_dict(state, "d_")


@register_recipe("recurrent")
class Recurrent(Supervised):
    """R-MBN's step 2 (MBN Sec. 3.6): the model runs every path in its recurrent order (`module.recurrent(x)`
    -> [(factor, output), ...]) and learns `OWN_STEP` x loss(output of the batch's own factor's step) +
    `FINAL` x loss(last output): its own path keeps specialising, the others learn to leave the image alone.
    A batch without a factor (mixed data, R-MBN*) learns the last output only (the paper does not say).
    `recurrent.targets: every_step` (ours) spreads the 0.2 over every other step instead (`every_step_loss`)."""

    OWN_STEP, FINAL = 0.8, 0.2

    def __init__(self, prepared: Prepared, dist: Dist):
        if not hasattr(prepared.module, "recurrent"):
            raise ConfigError(f"{prepared.origin}: recipe recurrent: {prepared.cfg.model.type} has no recurrent "
                              "paths (a model with `recurrent(image)`, e.g. mbn)")
        if dist.active:
            raise ConfigError(f"{prepared.origin}: recipe recurrent runs in one process (its forward is the "
                              "model's recurrent method, outside DDP)")
        super().__init__(prepared, dist)

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        with autocast(self.cfg, self.device):
            steps = self.net.recurrent(batch.lq)
        outputs, factors = [out for _, out in steps], [f for f, _ in steps]
        factor = self.conditions.get("factor")
        own = factors.index(factor) if factor in factors else None
        if own is not None and self.cfg.recurrent.targets == "every_step":
            loss, final = self.every_step_loss(outputs, own, batch)
        else:
            final = self.pixel_loss(outputs[-1], batch)
            loss = final if own is None else self.OWN_STEP * self.pixel_loss(outputs[own], batch) + self.FINAL * final
        self.g.update(loss, self.dist)
        if self.ema is not None:
            self.ema.update(self.net)
        return {"loss": loss.detach(), "final_loss": final.detach()}

    def every_step_loss(self, outputs: list[torch.Tensor], own: int, batch: Batch
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """recurrent.targets every_step: (0.8 x the own step against the clean image + 0.2 x the mean of the other
        steps, each against the degraded input (before the own step: leave it alone) or the clean image (after);
        the last step's loss, for the log). Each step's loss is computed once."""
        passed = replace(batch, hq=batch.lq)
        losses = [self.pixel_loss(out, passed if i < own else batch) for i, out in enumerate(outputs)]
        others = [value for i, value in enumerate(losses) if i != own]
        loss = self.OWN_STEP * losses[own] + self.FINAL * torch.stack(others).mean() if others else losses[own]
        return loss, losses[-1]


# ------------------------------------------------------------------------------------ staged


@dataclass(frozen=True)
class StagePlan:
    """One stage: its name, the full config it runs and whether it starts from the previous stage."""

    name: str
    cfg: Config
    init_strict: bool = True


def stage_overrides(stage: Any) -> dict[str, Any]:
    """A stage's keys as dotted overrides of the base config (null keys keep the base's value)."""
    plain = stage.to_plain()
    out: dict[str, Any] = {"recipe": stage.recipe, "stages": []}
    mapping = {"steps": "train.steps", "levels": "data.train.levels", "val_levels": "data.val.levels",
               "freeze": "model.freeze", "train_only": "model.train_only", "strength": "model.strength",
               "loss": "train.loss"}
    for field_name, dotted in mapping.items():
        if plain[field_name] is not None:
            out[dotted] = plain[field_name]
    if plain["levels"] is not None and plain["val_levels"] is None:
        out["data.val.levels"] = plain["levels"]
    for name, value in stage.model_args.items():
        out[f"model.args.{name}"] = value
    out.update(copy.deepcopy(stage.set))
    return out


def plan_stages(cfg: Config) -> list[StagePlan]:
    """The configs a run trains, in order: the config itself, or (recipe staged) one derived config per
    stage. Stage i > 0 starts from stage i-1's final weights (not from `model.init`)."""
    if cfg.recipe != "staged":
        return [StagePlan(cfg.name, cfg)]
    base = cfg.to_plain()
    plans = []
    for i, stage in enumerate(cfg.stages):
        overrides = stage_overrides(stage)
        if i > 0:
            overrides["model.init"] = None
        raw = copy.deepcopy(base)
        for dotted, value in overrides.items():
            apply_override(raw, dotted, value)
        stage_cfg = validate_config(raw, f"{cfg.origin} (stages[{i}] {stage.name})")
        plans.append(StagePlan(stage.name, stage_cfg, stage.init_strict))
    return plans
