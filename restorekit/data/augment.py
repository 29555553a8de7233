"""Augmentations: the 8 flips/rotations, and the thesis's CutBlur and Mixture-of-Augmentations (MoA).

The batch augmentations follow the thesis (Sec. 4.3, Table 4.1), with the reference code (clovaai/
cutblur) settling what the thesis leaves open:

| DA | what it does | default alpha |
|---|---|---|
| blend | x <- v*x + (1-v)*c on input and target; c ~ U(0,1) per sample and channel, v ~ U(alpha, 1) | 0.6 |
| rgb | one random permutation of the RGB channels, input and target | - |
| mixup | x <- v*x + (1-v)*x[perm], v ~ Beta(alpha, alpha), input and target | 1.2 |
| cutout | erase input pixels with probability alpha; erased pixels are left out of the loss | 0.001 |
| cutmix | box of side int(side * lambda), lambda ~ N(alpha, 0.01^2), fully inside, pasted from another sample | 0.7 |
| cutmixup | cutmix whose pasted content is a mixup (Beta(1.2, 1.2)) image, inside or outside the box (p 0.5) | 0.7 / 1.2 |
| cutblur | box as cutmix between the LQ and HQ versions of the same image; HQ-into-LQ or LQ-into-HQ (p 0.5) | 0.7 |

MoA: per step, with decision probability p apply one augmentation chosen by the ratio vector `mix_p`
(uniform by default). Thesis defaults: p = 1.0 for SR, 0.6 for the other restoration tasks (DN, JPEG,
mixed), 0.2 for SRCNN/CARN on synthetic SR; RealSR/CameraSR use mix_p = 40% CutBlur, 10% each other.

All functions take (lq, hq) batches with images in [0, 1] (lq may be smaller than hq by an integer
factor, except for cutblur), never modify their inputs, and draw every random number from a numpy
Generator so that a run is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

AUGMENTATIONS = ("blend", "rgb", "mixup", "cutout", "cutmix", "cutmixup", "cutblur")
DEFAULT_ALPHAS = {"blend": 0.6, "rgb": 0.0, "mixup": 1.2, "cutout": 0.001, "cutmix": 0.7, "cutmixup": 0.7,
                  "cutblur": 0.7}
CUTMIXUP_MIXUP_ALPHA = 1.2
BOX_RATIO_STD = 0.01  # lambda ~ N(alpha, 0.01^2): the thesis's "N(alpha, 0.01)", a std in the reference code


# ---------------------------------------------------------------------------------- flips / rotations


def dihedral_numpy(image: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips/rotations of an (H, W, C) array: bit 0 flips left-right, bits 1-2 count
    quarter turns (counter-clockwise, as np.rot90). Always a view, by plain slicing (np.rot90's generic
    code costs more than the whole crop in the data loader's hot path)."""
    if code & 1:
        image = image[:, ::-1]
    turns = (code >> 1) & 3
    if turns == 1:
        return image.swapaxes(0, 1)[::-1]
    if turns == 2:
        return image[::-1, ::-1]
    if turns == 3:
        return image.swapaxes(0, 1)[:, ::-1]
    return image


def dihedral(x: torch.Tensor, code: int) -> torch.Tensor:
    """The same 8 transforms on (..., H, W) tensors (same codes as `dihedral_numpy`)."""
    if code & 1:
        x = x.flip(-1)
    return torch.rot90(x, (code >> 1) & 3, dims=(-2, -1))


def inverse_dihedral(x: torch.Tensor, code: int) -> torch.Tensor:
    """Undo `dihedral(x, code)` (for x8 self-ensembles)."""
    x = torch.rot90(x, -((code >> 1) & 3), dims=(-2, -1))
    return x.flip(-1) if code & 1 else x


# ---------------------------------------------------------------------------------- the MoA members


def _scale_of(lq: torch.Tensor, hq: torch.Tensor) -> int:
    scale = hq.shape[-1] // lq.shape[-1]
    if scale < 1 or lq.shape[-1] * scale != hq.shape[-1] or lq.shape[-2] * scale != hq.shape[-2]:
        raise ValueError(f"hq {tuple(hq.shape)} is not an integer multiple of lq {tuple(lq.shape)}")
    return scale


def box(height: int, width: int, alpha: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, box_h, box_w): side = int(side * lambda) with lambda ~ N(alpha, 0.01^2), box fully inside."""
    ratio = float(np.clip(rng.normal(alpha, BOX_RATIO_STD), 0.0, 1.0))
    ch, cw = int(height * ratio), int(width * ratio)
    top = int(rng.integers(0, height - ch + 1))
    left = int(rng.integers(0, width - cw + 1))
    return top, left, ch, cw


def blend(lq, hq, rng, alpha: float = 0.6):
    """Blend input and target with the same constant colour: x <- v*x + (1-v)*c."""
    c = torch.from_numpy(rng.uniform(0, 1, (lq.shape[0], lq.shape[1], 1, 1))).to(lq)
    v = float(rng.uniform(alpha, 1))
    return v * lq + (1 - v) * c, v * hq + (1 - v) * c.to(hq)


def rgb_permute(lq, hq, rng):
    """One random channel permutation applied to input and target (a no-op on grey images)."""
    perm = torch.from_numpy(rng.permutation(lq.shape[1])).to(lq.device)
    return lq[:, perm], hq[:, perm.to(hq.device)]


def mixup(lq, hq, rng, alpha: float = 1.2):
    """Mix every sample with another of the batch: v ~ Beta(alpha, alpha), same v and partner for both."""
    v = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(lq.shape[0])).to(lq.device)
    return v * lq + (1 - v) * lq[perm], v * hq + (1 - v) * hq[perm.to(hq.device)]


def cutout(lq, hq, rng, alpha: float = 0.001):
    """Erase input pixels with probability alpha; returns (lq, hq, loss mask at hq size: 0 = erased)."""
    scale = _scale_of(lq, hq)
    keep = rng.random((lq.shape[0], 1, *lq.shape[-2:])) >= alpha
    mask = torch.from_numpy(keep).to(lq)
    loss_mask = F.interpolate(mask, scale_factor=scale, mode="nearest") if scale > 1 else mask
    return lq * mask, hq, loss_mask.to(hq)


def cutmix(lq, hq, rng, alpha: float = 0.7):
    """Paste the same box (at each resolution) from a partner sample into input and target."""
    scale = _scale_of(lq, hq)
    top, left, ch, cw = box(*lq.shape[-2:], alpha, rng)
    perm = torch.from_numpy(rng.permutation(lq.shape[0]))
    lq, hq = lq.clone(), hq.clone()
    lq[..., top:top + ch, left:left + cw] = lq[perm.to(lq.device), :, top:top + ch, left:left + cw]
    t, l_, h, w = top * scale, left * scale, ch * scale, cw * scale
    hq[..., t:t + h, l_:l_ + w] = hq[perm.to(hq.device), :, t:t + h, l_:l_ + w]
    return lq, hq


def cutmixup(lq, hq, rng, alpha: float = 0.7, mixup_alpha: float = CUTMIXUP_MIXUP_ALPHA, mixup_prob: float = 1.0):
    """CutMix whose pasted content is a mixup of the sample and a partner; the mixup goes inside the box
    or, with probability 0.5, everywhere outside it (reference-code behaviour)."""
    scale = _scale_of(lq, hq)
    top, left, ch, cw = box(*lq.shape[-2:], alpha, rng)
    perm = torch.from_numpy(rng.permutation(lq.shape[0]))
    v = float(rng.beta(mixup_alpha, mixup_alpha))
    if rng.random() < mixup_prob:
        mixed_lq = v * lq + (1 - v) * lq[perm.to(lq.device)]
        mixed_hq = v * hq + (1 - v) * hq[perm.to(hq.device)]
    else:
        mixed_lq, mixed_hq = lq[perm.to(lq.device)], hq[perm.to(hq.device)]
    t, l_, h, w = top * scale, left * scale, ch * scale, cw * scale
    if rng.random() > 0.5:  # mixup inside the box
        out_lq, out_hq = lq.clone(), hq.clone()
        out_lq[..., top:top + ch, left:left + cw] = mixed_lq[..., top:top + ch, left:left + cw]
        out_hq[..., t:t + h, l_:l_ + w] = mixed_hq[..., t:t + h, l_:l_ + w]
    else:  # mixup outside the box
        out_lq, out_hq = mixed_lq.clone(), mixed_hq.clone()
        out_lq[..., top:top + ch, left:left + cw] = lq[..., top:top + ch, left:left + cw]
        out_hq[..., t:t + h, l_:l_ + w] = hq[..., t:t + h, l_:l_ + w]
    return out_lq, out_hq


def cutblur(lq, hq, rng, alpha: float = 0.7):
    """CutBlur (thesis Eq. 4.1): box M with side int(side * lambda), lambda ~ N(alpha, 0.01^2);
    with probability 0.5 the input is M*HQ + (1-M)*LQ (HQ box in an LQ image), else M*LQ + (1-M)*HQ.
    The target is always the unmodified HQ. For SR the LQ is first nearest-upsampled to HQ size, so the
    model must take HR-size inputs (a desubpixel head, thesis step 5)."""
    if lq.shape[-2:] != hq.shape[-2:]:
        lq = F.interpolate(lq, size=hq.shape[-2:], mode="nearest")
    top, left, ch, cw = box(*hq.shape[-2:], alpha, rng)
    if rng.random() > 0.5:  # HQ box pasted into the LQ image
        out = lq.clone()
        out[..., top:top + ch, left:left + cw] = hq[..., top:top + ch, left:left + cw]
    else:  # LQ box pasted into the HQ image
        out = hq.clone()
        out[..., top:top + ch, left:left + cw] = lq[..., top:top + ch, left:left + cw]
    return out, hq


@dataclass
class MoA:
    """Mixture of augmentations: with probability `p`, apply one member chosen by `mix_p` (uniform)."""

    augs: tuple[str, ...] = AUGMENTATIONS
    p: float = 0.6
    mix_p: tuple[float, ...] | None = None
    alphas: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_ALPHAS))
    mixup_alpha: float = CUTMIXUP_MIXUP_ALPHA  # cutmixup's mixup part

    def __post_init__(self):
        unknown = [a for a in self.augs if a not in AUGMENTATIONS and a != "none"]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}; choose from: {', '.join(AUGMENTATIONS)}")
        if self.mix_p is not None:
            if len(self.mix_p) != len(self.augs) or any(v < 0 for v in self.mix_p) or sum(self.mix_p) <= 0:
                raise ValueError(f"mix_p needs {len(self.augs)} non-negative ratios, got {list(self.mix_p)}")
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p}")

    def choose(self, rng: np.random.Generator) -> str:
        """The member applied this step, or 'none' (decision probability failed)."""
        if rng.random() >= self.p:
            return "none"
        ratios = None if self.mix_p is None else np.asarray(self.mix_p, np.float64) / sum(self.mix_p)
        return self.augs[int(rng.choice(len(self.augs), p=ratios))]

    def __call__(self, lq: torch.Tensor, hq: torch.Tensor, rng: np.random.Generator):
        """-> (lq, hq, loss mask or None, name of the member applied)."""
        name = self.choose(rng)
        mask = None
        alpha = self.alphas.get(name, DEFAULT_ALPHAS.get(name, 0.0))
        if name == "blend":
            lq, hq = blend(lq, hq, rng, alpha)
        elif name == "rgb":
            lq, hq = rgb_permute(lq, hq, rng)
        elif name == "mixup":
            lq, hq = mixup(lq, hq, rng, alpha)
        elif name == "cutout":
            lq, hq, mask = cutout(lq, hq, rng, alpha)
        elif name == "cutmix":
            lq, hq = cutmix(lq, hq, rng, alpha)
        elif name == "cutmixup":
            lq, hq = cutmixup(lq, hq, rng, alpha, self.mixup_alpha)
        elif name == "cutblur":
            lq, hq = cutblur(lq, hq, rng, alpha)
        return lq, hq, mask, name
