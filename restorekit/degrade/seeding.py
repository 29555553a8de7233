"""Seeds and sources of randomness.

Two paths use the same operators:

* evaluation (`Pipeline.apply_one(image, seed)`): every random draw derives from the image seed, through
  generators that are stable across machines and library versions (numpy's PCG64 and legacy
  RandomState), so a test set is regenerated bit-exactly from its JSON records;
* training (`Pipeline(batch, generator)`): levels and host-side structure (mask positions, kernels)
  come from one numpy generator seeded from the caller's torch.Generator, and bulk tensors (noise,
  Bernoulli masks) come from that torch.Generator on the batch's device, so nothing is the bottleneck.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

SEED_LIMIT = 2**32  # numpy's legacy RandomState (the KAIR/DnCNN protocol) takes seeds below 2**32

# How a set of images is seeded: 'name' gives each image `image_seed(seed, file name)`; 'fixed' gives
# every image `seed` itself (KAIR's np.random.seed(0) per image).
SEED_MODES = ("name", "fixed")


def default_seed_mode(spec: str | None) -> str:
    """`restorekit eval`'s seeding when none is named: a degradation named by its spec gives each image its own
    draw ('name'); the task's canonical level seeds every image alike ('fixed', the KAIR protocol)."""
    return "name" if spec else "fixed"


def seed_for(mode: str, seed: int, name: str) -> int:
    """The seed of one image under a seed mode."""
    if mode not in SEED_MODES:
        raise ValueError(f"unknown seed mode {mode!r}; choose one of {', '.join(SEED_MODES)}")
    return int(seed) if mode == "fixed" else image_seed(seed, name)


def image_seed(base_seed: int, name: str) -> int:
    """Seed of one image: a hash of (`base_seed`, file name), identical on every machine and run.

    Uses SHA-256, not Python's `hash()` (salted per process), so every model evaluated with the same
    `--seed` sees identical inputs. Pass the file *name* (e.g. 'baby.png'), not a path, so the seed
    does not depend on where the data lives.
    """
    digest = hashlib.sha256(f"restorekit-image-seed:{int(base_seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def derive_seed(seed: int, *tags: object) -> int:
    """An independent 32-bit seed for a sub-stream (a pipeline stage, an SHDD region) of `seed`."""
    text = ":".join(str(tag) for tag in (int(seed), *tags))
    return int.from_bytes(hashlib.sha256(f"restorekit-derive:{text}".encode()).digest()[:4], "little")


def level_rng(seed: int, *tags: object) -> np.random.Generator:
    """Generator for sampling levels (and subset / region choices), separate from the operators' own
    streams so that replaying fixed levels reproduces the same noise and masks."""
    return np.random.default_rng(derive_seed(seed, "levels", *tags))


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    return int(seed)


@dataclass
class Context:
    """Where one operator call takes its random draws from, and how precisely it computes.

    `seeds` holds one seed per sample in evaluation (None in training); `host` draws CPU-side
    structure; `generator` (training only) draws bulk tensors on its own device.
    """

    host: np.random.Generator
    generator: torch.Generator | None = None
    seeds: list[int] | None = None

    @property
    def evaluation(self) -> bool:
        """Evaluation favours exactness (float64 resizing, legacy-numpy noise) over speed."""
        return self.generator is None

    @classmethod
    def for_seed(cls, seed: int) -> Context:
        """Context of one image in evaluation (also used to replay a record)."""
        return cls(host=np.random.default_rng(seed), generator=None, seeds=[seed])

    def sample_seed(self) -> int:
        """A fresh seed from the host stream (training-mode stand-in for a per-image seed)."""
        return int(self.host.integers(SEED_LIMIT))

    def uniform(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """U(0, 1) tensor of `shape` on `like`'s device and dtype.

        Training path: 16-bit uniforms cut from 64-bit random integers ((k + 0.5) / 65536), four per
        generator call, which is 2-3x faster than torch.rand on a CPU; thresholds such as a Bernoulli
        ratio are then resolved to 1/65536, far below any statistical test's tolerance.
        """
        if self.generator is None:
            return torch.from_numpy(self.host.random(shape)).to(like.device, like.dtype)
        count = math.prod(shape)
        words = torch.randint(
            -(2**63), 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64, generator=self.generator, device=self.generator.device
        )
        halves = words.view(torch.int16)[:count].to(like.dtype)
        return halves.add_(32768.5).mul_(1 / 65536).view(shape).to(like.device)

    def normal(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """N(0, 1) tensor of `shape` on `like`'s device and dtype."""
        if self.generator is not None:
            out = torch.randn(shape, generator=self.generator, device=self.generator.device, dtype=like.dtype)
            return out.to(like.device)
        return torch.from_numpy(self.host.standard_normal(shape)).to(like.device, like.dtype)


def training_host_rng(generator: torch.Generator) -> np.random.Generator:
    """One host generator per training call, seeded from the caller's torch.Generator (one sync)."""
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item()
    return np.random.default_rng(int(seed))
