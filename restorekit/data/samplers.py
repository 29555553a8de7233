"""Which degradation level each training sample gets, and which image: the strategies the papers compare.

A *level* is one entry of the config's `data.train.levels` (a spec such as `noise:sigma=0..20`, or a
degradation type for MBN). A strategy decides, for each step, the level of every sample of the GLOBAL
batch:

* `single`: every sample at one level (the per-level baseline every paper trains).
* `rigid_joint`: equal shares of every batch for every level (the "Joint" baseline).
* `on_demand` (Gao & Grauman, ICCV'17): after each epoch, validate per level; the next epoch's share of
  level i is `score_i * 100 / sum(score)` with `score_i = 1 / PSNR_i`, so a level the model is worse at
  gets more of the batch (the rule in on-demand-learning's `training_schemes/on_demand_learning.sh`).
* `uncertainty` (Kendall et al.): rigid-joint sampling; the loss is weighted by one learned log-variance
  per level (see `restorekit.train.losses.UncertaintyWeighting`).
* `curriculum` / `anti_curriculum`: easy-to-hard (or hard-to-easy) stages of equal length, `staged`
  (one level per stage) or `cumulative` (each stage adds a level), as the on-demand repository's scripts.
* `mbn_cycle` (MBN paper, Sec. 3.5): training runs in cycles of single-level minibatches, e.g. 1 haze,
  1 rain, 1 JPEG, 3 blur, "packed in random order" within each cycle.

Everything a step needs is a pure function of (seed, step, strategy state), so a resumed run and a run
split over N processes draw exactly the same samples: the plan is computed for the whole global batch
on every rank, and each rank keeps its slice.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from restorekit.errors import ConfigError

STRATEGIES = ("single", "rigid_joint", "on_demand", "uncertainty", "curriculum", "anti_curriculum", "mbn_cycle")


def mix_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of ints/strings; stable across processes and machines."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to `total`, proportional to `shares` (Hamilton's method, ties to lower index)."""
    shares = np.asarray(shares, dtype=np.float64)
    if shares.sum() <= 0:
        shares = np.ones_like(shares)
    exact = shares / shares.sum() * total
    counts = np.floor(exact).astype(np.int64)
    remainder = exact - counts
    order = np.argsort(-remainder, kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def on_demand_shares(psnr: list[float] | np.ndarray) -> np.ndarray:
    """On-Demand Learning's rule: share_i = score_i * 100 / sum(score) with score_i = 1 / PSNR_i (percent).

    A level with infinite PSNR (already perfect) scores 0; non-finite or non-positive values are errors
    in the validation, so they fall back to equal shares rather than starving a level silently.
    """
    psnr = np.asarray(psnr, dtype=np.float64)
    if np.any(np.isnan(psnr)) or np.any(psnr <= 0):
        return np.full(len(psnr), 100.0 / len(psnr))
    score = np.where(np.isinf(psnr), 0.0, 1.0 / np.where(np.isinf(psnr), 1.0, psnr))
    if score.sum() <= 0:
        return np.full(len(psnr), 100.0 / len(psnr))
    return score * 100.0 / score.sum()


class LevelStrategy:
    """Base: `levels(step, batch, rng)` -> level index per sample of the global batch."""

    name = "base"
    needs_validation = False  # True: `update` wants per-level validation PSNR after each epoch
    weights_loss = False  # True: the trainer weights per-level losses by learned uncertainty

    def __init__(self, n_levels: int):
        self.n_levels = n_levels

    def levels(self, step: int, batch: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def shares(self, step: int) -> np.ndarray:
        """Fraction of samples per level at `step` (for logs and tests)."""
        raise NotImplementedError

    def update(self, psnr_per_level: list[float]) -> None:
        """Feedback after an epoch's validation (only strategies with `needs_validation` use it)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class SharesStrategy(LevelStrategy):
    """Fixed composition per batch: counts by largest remainder, positions shuffled."""

    def __init__(self, n_levels: int, shares: np.ndarray | None = None):
        super().__init__(n_levels)
        self._shares = np.full(n_levels, 1.0 / n_levels) if shares is None else np.asarray(shares, np.float64)

    def shares(self, step: int) -> np.ndarray:
        return self._shares / self._shares.sum()

    def levels(self, step: int, batch: int, rng: np.random.Generator) -> np.ndarray:
        counts = largest_remainder(self.shares(step), batch)
        return rng.permutation(np.repeat(np.arange(self.n_levels), counts))


class Single(SharesStrategy):
    name = "single"

    def __init__(self, n_levels: int, level: int = 0):
        if not 0 <= level < n_levels:
            raise ConfigError(f"strategy.level {level} is out of range: there are {n_levels} levels")
        shares = np.zeros(n_levels)
        shares[level] = 1.0
        super().__init__(n_levels, shares)


class RigidJoint(SharesStrategy):
    name = "rigid_joint"


class Uncertainty(SharesStrategy):
    name = "uncertainty"
    weights_loss = True


class OnDemand(SharesStrategy):
    name = "on_demand"
    needs_validation = True

    def __init__(self, n_levels: int):
        super().__init__(n_levels)
        self.history: list[dict] = []

    def update(self, psnr_per_level: list[float]) -> None:
        if len(psnr_per_level) != self.n_levels:
            raise ValueError(f"on_demand: got {len(psnr_per_level)} PSNR values for {self.n_levels} levels")
        self._shares = on_demand_shares(psnr_per_level)
        self.history.append({"psnr": [float(v) for v in psnr_per_level], "shares": self._shares.tolist()})

    def state_dict(self) -> dict:
        return {"shares": self._shares.tolist(), "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self._shares = np.asarray(state["shares"], np.float64)
        self.history = list(state.get("history", []))


class Curriculum(SharesStrategy):
    """Stages of equal length over `total_steps`; levels are ordered easy (index 0) to hard."""

    name = "curriculum"

    def __init__(self, n_levels: int, total_steps: int, mode: str = "staged", reverse: bool = False):
        super().__init__(n_levels)
        if mode not in ("staged", "cumulative"):
            raise ConfigError(f"strategy.curriculum must be 'staged' or 'cumulative', not {mode!r}")
        self.total_steps, self.mode, self.reverse = max(1, total_steps), mode, reverse
        self.name = "anti_curriculum" if reverse else "curriculum"

    def stage(self, step: int) -> int:
        return min(self.n_levels - 1, step * self.n_levels // self.total_steps)

    def shares(self, step: int) -> np.ndarray:
        stage = self.stage(step)
        order = np.arange(self.n_levels)[::-1] if self.reverse else np.arange(self.n_levels)
        active = order[stage:stage + 1] if self.mode == "staged" else order[: stage + 1]
        shares = np.zeros(self.n_levels)
        shares[active] = 1.0 / len(active)
        return shares


class MBNCycle(LevelStrategy):
    """Cycles of single-level minibatches, `counts[i]` of level i per cycle, in random order per cycle."""

    name = "mbn_cycle"

    def __init__(self, n_levels: int, counts: list[int], seed: int = 0):
        super().__init__(n_levels)
        if len(counts) != n_levels or any(c < 0 for c in counts) or sum(counts) == 0:
            raise ConfigError(f"strategy.cycle needs one non-negative count per level ({n_levels}), got {counts}")
        self.counts, self.seed = list(counts), seed

    @property
    def cycle_length(self) -> int:
        return sum(self.counts)

    def cycle(self, index: int) -> np.ndarray:
        """Level of each minibatch of cycle `index` (random order, fixed by the seed)."""
        rng = np.random.default_rng(mix_seed(self.seed, "mbn-cycle", index))
        return rng.permutation(np.repeat(np.arange(self.n_levels), self.counts))

    def level_at(self, step: int) -> int:
        return int(self.cycle(step // self.cycle_length)[step % self.cycle_length])

    def shares(self, step: int) -> np.ndarray:
        shares = np.zeros(self.n_levels)
        shares[self.level_at(step)] = 1.0
        return shares

    def levels(self, step: int, batch: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(batch, self.level_at(step), dtype=np.int64)


def build_strategy(kind: str, n_levels: int, *, level: int = 0, total_steps: int = 1, curriculum: str = "staged",
                   cycle: list[int] | None = None, seed: int = 0) -> LevelStrategy:
    if kind == "single":
        return Single(n_levels, level)
    if kind == "rigid_joint":
        return RigidJoint(n_levels)
    if kind == "uncertainty":
        return Uncertainty(n_levels)
    if kind == "on_demand":
        return OnDemand(n_levels)
    if kind in ("curriculum", "anti_curriculum"):
        return Curriculum(n_levels, total_steps, curriculum, reverse=kind == "anti_curriculum")
    if kind == "mbn_cycle":
        return MBNCycle(n_levels, cycle or [1] * n_levels, seed)
    raise ConfigError(f"unknown strategy {kind!r}; choose one of: {', '.join(STRATEGIES)}")


@dataclass(frozen=True)
class SampleKey:
    """Everything a worker needs to produce one training sample, with no hidden state."""

    level: int  # index into the config's levels
    source: int  # index of the image source of that level
    image: int  # index of the image within the source
    seed: int  # crop position, flips and degradation noise derive from this


def scale_of_step(seed: int, step: int, scales: int, weights: Sequence[float] | None = None) -> int:
    """Index of the scale a multi-scale SR step trains (CARN: one of x2/x3/x4 per batch, uniformly; or in
    proportion to `weights`): a pure function of (seed, step), so a resumed or N-process run draws the same
    scale at every step."""
    draw = mix_seed(seed, "scale", step)
    if weights is None:
        return draw % scales
    bounds = np.cumsum(np.asarray(weights, dtype=np.float64))
    return int(min(np.searchsorted(bounds, draw / 2.0 ** 63 * bounds[-1], side="right"), scales - 1))


class StepPlan:
    """The global batch of every step: levels from the strategy, images by epoch-wise permutations.

    Image choice walks a fresh permutation of each source per epoch (every image seen once per epoch, as
    with a shuffled sampler) indexed by the global sample counter `step * batch + j`, so it needs no
    state beyond the step.

    Multi-scale SR (`scales` > 1): the levels are the strategy's levels repeated once per scale (level
    index = scale index * strategy levels + strategy level); each step draws one scale for its whole batch.
    """

    def __init__(self, strategy: LevelStrategy, level_sources: list[int], source_sizes: list[int],
                 batch_size: int, seed: int, scales: int = 1, scale_weights: Sequence[float] | None = None):
        self.strategy, self.level_sources, self.source_sizes = strategy, level_sources, source_sizes
        self.batch_size, self.seed, self.scales, self.scale_weights = batch_size, seed, scales, scale_weights
        self._perms: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def _permutation(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._perms:
            rng = np.random.default_rng(mix_seed(self.seed, "images", source, epoch))
            self._perms[key] = rng.permutation(self.source_sizes[source])
            while len(self._perms) > 16:
                self._perms.popitem(last=False)
        return self._perms[key]

    def image_index(self, source: int, counter: int) -> int:
        size = self.source_sizes[source]
        return int(self._permutation(source, counter // size)[counter % size])

    def keys(self, step: int) -> list[SampleKey]:
        rng = np.random.default_rng(mix_seed(self.seed, "levels", step))
        levels = self.strategy.levels(step, self.batch_size, rng)
        if self.scales > 1:
            levels = levels + scale_of_step(self.seed, step, self.scales, self.scale_weights) * self.strategy.n_levels
        keys = []
        for j, level in enumerate(levels):
            source = self.level_sources[int(level)]
            counter = step * self.batch_size + j
            keys.append(SampleKey(int(level), source, self.image_index(source, counter), mix_seed(self.seed, step, j)))
        return keys

    def epoch_of(self, step: int) -> int:
        """Epoch (passes over the largest source) that `step` belongs to."""
        return step * self.batch_size // max(self.source_sizes)


def rank_slice(batch_size: int, rank: int, world: int) -> slice:
    """This rank's part of the global batch (the global batch must divide evenly)."""
    if batch_size % world:
        raise ConfigError(f"train.batch_size {batch_size} does not split evenly over {world} processes")
    per = batch_size // world
    return slice(rank * per, (rank + 1) * per)


class StepBatchSampler:
    """A DataLoader `batch_sampler`: yields this rank's SampleKeys for steps [start, stop)."""

    def __init__(self, plan: StepPlan, start: int, stop: int, rank: int = 0, world: int = 1):
        self.plan, self.start, self.stop = plan, start, stop
        self.part = rank_slice(plan.batch_size, rank, world)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.plan.keys(step)[self.part]
