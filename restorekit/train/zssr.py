"""ZSSR (Shocher, Cohen, Irani, "Zero-Shot Super-Resolution using Deep Internal Learning", CVPR 2018), the
per-image baseline of SimUSR (thesis ch. 5, spec 4.1): train a small network on (son -> father) pairs cut
from the test LR image itself, then run it on that image.

* Network: 8 3x3 convolutions of 64 channels with ReLUs, predicting the residual on the MATLAB-bicubic
  upscaled input: exactly `vdsr(depth=8, features=64, channels=3)` (225,091 parameters; the thesis says
  0.23M), so no new family. Its last convolution starts at zero, so step 0 *is* bicubic and a few steps
  can only move away from it where the loss says so.
* Pairs: a random father crop of the LR image (side `crop`, clipped to the image, a multiple of the scale),
  one of the 8 flips/rotations; son = the SR benchmark's LR generator applied to the father
  (`evaluation.sr_pair`: MATLAB-bicubic downscale, rounded to 8 bits), so son relates to father exactly as
  the test LR image relates to its unknown HR image. No affine or scale augmentation (the thesis removed
  ZSSR's affine augmentation because it hurt, Table 5.3).
* Optimisation: L1, Adam lr 1e-3, halved at 50% and 75% of the steps (ZSSR divides by 10 on a plateau of
  a linear fit of the error; fixed steps keep runs reproducible and their cost known), batch 4.
* Inference: the mean over the 8 flips/rotations (ZSSR's geometric self-ensemble; ZSSR takes the median
  and adds back-projection, not done here).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass

import torch
from torch import nn

from restorekit.data.augment import dihedral
from restorekit.errors import RestorekitError
from restorekit.evaluation import EvalSetup, sr_pair
from restorekit.infer import run_ensemble

MIN_SON = 4  # the smallest son side (px) worth training on: a father of 4 x scale pixels
THESIS_PARAMS = 230_000  # thesis 4.1 / Table 5.4: "0.23M"


def zssr_network(channels: int = 3) -> nn.Module:
    """ZSSR's network as the VDSR family builds it (8 layers, 64 features), last conv zeroed (starts at bicubic)."""
    from restorekit.models.vdsr import vdsr

    net = vdsr(depth=8, features=64, channels=channels)
    last = net.layers[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return net


def son_of(father: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR son of (a batch of) father image(s): the SR benchmark's MATLAB-bicubic downscale, 8-bit rounded.
    Fathers must be multiples of the scale (crops here are), so nothing is cropped away."""
    son, _ = sr_pair(father, EvalSetup(task="sr", scale=scale))
    return son


@dataclass(frozen=True)
class ZSSRStats:
    """What a run cost and how it ended; `seconds` is training plus inference (thesis Table 5.4's runtime)."""

    scale: int
    steps: int
    seed: int
    crop: int
    batch: int
    lr: float
    ensemble: bool
    params: int
    final_loss: float  # mean L1 (0..1 scale) over the last tenth of the steps
    train_seconds: float
    infer_seconds: float
    seconds: float
    threads: int
    device: str

    def to_json(self) -> dict:
        return asdict(self)


def crop_side(height: int, width: int, scale: int, crop: int) -> int:
    """The father crop side: `crop` clipped to the image, down to a multiple of the scale; refuses images
    too small to give a son of MIN_SON pixels."""
    side = min(crop, height, width)
    side -= side % scale
    if side < MIN_SON * scale:
        raise RestorekitError(f"image is {width}x{height} (WxH): ZSSR at x{scale} needs at least "
                              f"{MIN_SON * scale} px on each side (a son of {MIN_SON} px)")
    return side


def random_fathers(lr: torch.Tensor, side: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """`batch` random side x side crops of the CHW image, each under a random flip/rotation."""
    height, width = lr.shape[-2:]
    tops = torch.randint(0, height - side + 1, (batch,), generator=generator).tolist()
    lefts = torch.randint(0, width - side + 1, (batch,), generator=generator).tolist()
    codes = torch.randint(0, 8, (batch,), generator=generator).tolist()
    return torch.stack([dihedral(lr[:, t:t + side, x:x + side], c) for t, x, c in zip(tops, lefts, codes)])


def _multistep(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.MultiStepLR:
    milestones = sorted({max(1, int(steps * f)) for f in (0.5, 0.75)})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.5)


def train_on_image(net: nn.Module, lr: torch.Tensor, scale: int, *, steps: int, side: int, batch: int,
                   learning_rate: float, generator: torch.Generator) -> float:
    """The (son -> father) training loop; returns the mean L1 over the last tenth of the steps."""
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    schedule = _multistep(optimizer, steps)
    recent: deque[float] = deque(maxlen=max(1, steps // 10))
    net.train()
    for _ in range(steps):
        father = random_fathers(lr, side, batch, generator)
        loss = (net(son_of(father, scale), scale=scale) - father).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent.append(float(loss.detach()))
    return sum(recent) / len(recent) if recent else float("nan")


def zssr(lr: torch.Tensor, scale: int, steps: int = 1000, seed: int = 0, *, crop: int = 64, batch: int = 4,
         learning_rate: float = 1e-3, ensemble: bool = True, device: str | torch.device = "cpu"
         ) -> tuple[torch.Tensor, ZSSRStats]:
    """Super-resolve the CHW image `lr` (float, [0, 1]) by `scale` with a network trained on it alone.

    Returns (SR image, CHW float on the CPU clamped to [0, 1], not rounded; stats). Seeded: the same
    (image, arguments, seed) give the same result on one machine.
    """
    if lr.ndim != 3 or lr.shape[0] not in (1, 3) or not lr.is_floating_point():
        raise RestorekitError(f"ZSSR needs a CHW float image with 1 or 3 channels, got {tuple(lr.shape)}")
    if int(scale) != scale or scale < 2:
        raise RestorekitError(f"ZSSR scale must be an integer >= 2, got {scale}")
    if steps < 0 or batch < 1:
        raise RestorekitError(f"ZSSR needs steps >= 0 and batch >= 1 (got steps={steps}, batch={batch})")
    scale = int(scale)
    side = crop_side(*lr.shape[-2:], scale, crop)
    device = torch.device(device)
    image = lr.detach().to(device, torch.float32)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = zssr_network(lr.shape[0]).to(device)
    generator = torch.Generator().manual_seed(seed)
    final_loss = train_on_image(net, image, scale, steps=steps, side=side, batch=batch,
                                learning_rate=learning_rate, generator=generator)
    trained = time.perf_counter()
    net.eval()
    with torch.inference_mode():
        def once(x: torch.Tensor) -> torch.Tensor:
            return net(x[None], scale=scale)[0]

        sr = (run_ensemble(once, image) if ensemble else once(image)).clamp(0, 1).cpu()
    done = time.perf_counter()
    stats = ZSSRStats(scale=scale, steps=steps, seed=seed, crop=side, batch=batch, lr=learning_rate,
                      ensemble=ensemble, params=sum(p.numel() for p in net.parameters()),
                      final_loss=final_loss, train_seconds=round(trained - started, 3),
                      infer_seconds=round(done - trained, 3), seconds=round(done - started, 3),
                      threads=torch.get_num_threads(), device=str(device))
    return sr, stats
