"""Map a degradation level to a modulation strength lambda (AdaFM Eq. 7), so users can ask for a level.

For a few middle levels the best lambda is found by a grid search on validation images; a polynomial
through those points and the anchors (start, 0) and (end, 1) is then fitted by least squares (order 1
for small ranges, 3 for large ones, as the paper), or the points are joined piecewise-linearly. The
curve is stored in the model card and evaluated with clipping to [0, 1].

The paper fits all points freely, so its own q80 -> q10 cubic gives -0.044 at q80, and a free fit of ours
gave 0.975 at q10: the end level would not get the adapted network. By default the polynomial is
therefore constrained to pass exactly through the anchors (`pin_ends=True`); the middle points are
fitted by least squares as before. `pin_ends=False` is the paper's free fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from restorekit.errors import RestorekitError

if TYPE_CHECKING:
    from restorekit.models import Model

STRENGTH_GRID = tuple(round(0.01 * i, 2) for i in range(101))  # 0.00 .. 1.00 step 0.01 (spec 4.5)


def best_strength(score: Callable[[float], float], grid: Sequence[float] = STRENGTH_GRID) -> tuple[float, list[float]]:
    """The lambda of `grid` with the highest score (e.g. mean PSNR at one level), and all scores."""
    scores = [float(score(lam)) for lam in grid]
    return float(grid[int(np.argmax(scores))]), scores


def choose_order(levels: Sequence[float], strengths: Sequence[float], tolerance: float = 0.03) -> int:
    """Order 1 when a straight line fits every point within `tolerance`, else 3 (needs >= 4 points).

    The paper uses M = 1 for q80->q40 (linear points) and M = 3 for q80->q10 (curved); this rule
    reproduces both choices from the data instead of from the level names.
    """
    if len(levels) < 4:
        return 1
    line = np.polyfit(levels, strengths, 1)
    return 1 if np.max(np.abs(np.polyval(line, levels) - np.asarray(strengths))) <= tolerance else 3


def pinned_polyfit(start: float, end: float, levels: Sequence[float], strengths: Sequence[float], order: int) -> list[float]:
    """Least-squares polynomial of `order` through (start, 0) and (end, 1) exactly.

    lambda(l) = t + (l - start)(l - end) q(l), with t the straight line between the anchors and q of
    order - 2 fitted to the other points; returned highest power first, like numpy.polyfit.
    """
    line = np.array([1.0, -start]) / (end - start)
    if order < 2:
        return line.tolist()
    both = np.polymul([1.0, -start], [1.0, -end])
    free = [(lv, s) for lv, s in zip(levels, strengths, strict=True) if lv not in (start, end)]
    x = np.array([lv for lv, _ in free], dtype=np.float64)
    residual = np.array([s for _, s in free]) - np.polyval(line, x)
    design = np.polyval(both, x)[:, None] * np.vander(x, order - 1)  # columns: (l-s)(l-e) l^k
    q, *_ = np.linalg.lstsq(design, residual, rcond=None)
    return np.polyadd(line, np.polymul(both, q)).tolist()


@dataclass
class StrengthCurve:
    """lambda(level) between `start` (lambda 0) and `end` (lambda 1); JSON-serialisable for model cards."""

    start: float
    end: float
    kind: str = "polynomial"  # 'polynomial' | 'piecewise'
    coefficients: list[float] = field(default_factory=list)  # highest power first (numpy.polyval)
    points: list[tuple[float, float]] = field(default_factory=list)  # (level, best lambda), anchors included

    def __call__(self, level: float) -> float:
        low, high = sorted((self.start, self.end))
        if not low - 1e-9 <= level <= high + 1e-9:
            raise RestorekitError(f"level {level:g} is outside this model's range {low:g}..{high:g}")
        if self.kind == "piecewise":
            pts = sorted(self.points)
            value = float(np.interp(level, [p[0] for p in pts], [p[1] for p in pts]))
        else:
            value = float(np.polyval(self.coefficients, level))
        return min(1.0, max(0.0, value))

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "kind": self.kind,
                "coefficients": list(self.coefficients), "points": [list(p) for p in self.points]}

    @classmethod
    def from_dict(cls, data: dict) -> StrengthCurve:
        return cls(start=data["start"], end=data["end"], kind=data.get("kind", "polynomial"),
                   coefficients=list(data.get("coefficients", [])),
                   points=[tuple(p) for p in data.get("points", [])])

    @classmethod
    def linear(cls, start: float, end: float) -> StrengthCurve:
        """The curve before any fitting: lambda proportional to the level's position in the range."""
        return fit_curve(start, end, {}, order=1)


def fit_curve(
    start: float,
    end: float,
    middle: dict[float, float],
    *,
    order: int | str = "auto",
    kind: str = "polynomial",
    pin_ends: bool = True,
) -> StrengthCurve:
    """Fit lambda(level) through (start, 0), (end, 1) and the measured {level: best lambda} points."""
    points = sorted({start: 0.0, end: 1.0, **{float(k): float(v) for k, v in middle.items()}}.items())
    levels = [p[0] for p in points]
    strengths = [p[1] for p in points]
    if kind == "piecewise":
        return StrengthCurve(start, end, "piecewise", [], points)
    if order == "auto":
        order = choose_order(levels, strengths)
    if len(points) < int(order) + 1:
        raise RestorekitError(f"an order-{order} polynomial needs {int(order) + 1} points, got {len(points)}")
    if pin_ends:
        coefficients = pinned_polyfit(start, end, levels, strengths, int(order))
    else:
        coefficients = np.polyfit(levels, strengths, int(order)).tolist()
    return StrengthCurve(start, end, "polynomial", coefficients, points)


def strength_sweep(
    model: Model,
    pairs: Sequence[tuple[object, object]],
    protocol,
    grid: Sequence[float] = STRENGTH_GRID,
    device: str = "cpu",
    **conditions: object,
) -> list[float]:
    """Mean PSNR of a modulated model over (degraded, clean) pairs for each strength in `grid` (other call
    conditions as given, e.g. the SR slider's scale).

    The inputs are degraded once and reused for every strength (a call argument), so the sweep costs
    len(grid) forward passes per image and nothing else.
    """
    from restorekit.infer import run_model
    from restorekit.metrics import psnr_batch

    means = []
    for lam in grid:
        scores = [float(psnr_batch(run_model(model, degraded, device, strength=float(lam), **conditions), clean,
                                   protocol))
                  for degraded, clean in pairs]
        means.append(sum(scores) / len(scores))
    return means
