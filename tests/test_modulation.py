"""lambda(level) fitting (AdaFM Eq. 7, spec 4.5)."""

from __future__ import annotations

import numpy as np
import pytest

from restorekit.errors import RestorekitError
from restorekit.modulation import STRENGTH_GRID, StrengthCurve, best_strength, choose_order, fit_curve

# Spec 4.5: best lambda at the middle levels of DeJPEG q80 -> q10 on LIVE1 (figure annotations).
PAPER_POINTS = {70: 0.07, 60: 0.14, 50: 0.20, 40: 0.28, 30: 0.40, 20: 0.59}
PAPER_CUBIC = [-5.91e-6, 1.01e-3, -6.24e-2, 1.51]  # lambda = 1.51 - 6.24e-2 q + 1.01e-3 q^2 - 5.91e-6 q^3


def test_grid_is_0_to_1_in_steps_of_0_01():
    assert len(STRENGTH_GRID) == 101 and STRENGTH_GRID[0] == 0.0 and STRENGTH_GRID[-1] == 1.0


def test_best_strength_finds_the_peak():
    lam, scores = best_strength(lambda x: -(x - 0.37) ** 2)
    assert lam == pytest.approx(0.37)
    assert len(scores) == 101


def test_fitting_the_papers_points_reproduces_its_cubic():
    curve = fit_curve(80, 10, PAPER_POINTS, pin_ends=False)  # the paper's free least-squares fit
    assert len(curve.coefficients) == 4  # large, curved range: order 3 chosen automatically
    levels = np.arange(10, 81, 10)
    ours = np.polyval(curve.coefficients, levels)
    paper = np.polyval(PAPER_CUBIC, levels)
    # The paper's coefficients are rounded to 3 significant digits; its curve is within 0.05 of its points.
    assert np.max(np.abs(ours - paper)) < 0.05
    for level, lam in PAPER_POINTS.items():
        assert curve(level) == pytest.approx(lam, abs=0.05)


def test_the_default_fit_passes_through_the_start_and_end_levels_exactly():
    # lambda 0 is the basic model, lambda 1 the adapted one: asking for the start or end level must give them.
    curve = fit_curve(80, 10, PAPER_POINTS)
    assert curve(80) == 0.0 and curve(10) == 1.0
    assert np.polyval(curve.coefficients, 80) == pytest.approx(0.0, abs=1e-12)
    assert np.polyval(curve.coefficients, 10) == pytest.approx(1.0, abs=1e-12)
    assert len(curve.coefficients) == 4
    for level, lam in PAPER_POINTS.items():  # still a close fit of the middle points
        assert curve(level) == pytest.approx(lam, abs=0.05)
    free = fit_curve(80, 10, PAPER_POINTS, pin_ends=False)
    assert abs(np.polyval(free.coefficients, 80)) > 1e-3  # the free fit misses the anchor


def test_small_linear_range_gets_order_one():
    # Spec 4.5: q80 -> q40 has lambda 0 / .25 / .5 / .71 / 1 -- linear, M = 1.
    curve = fit_curve(80, 40, {70: 0.25, 60: 0.5, 50: 0.71})
    assert len(curve.coefficients) == 2
    assert choose_order([80, 70, 60, 50, 40], [0, 0.25, 0.5, 0.71, 1]) == 1


def test_curve_is_clipped_and_range_checked():
    curve = fit_curve(80, 10, PAPER_POINTS, pin_ends=False)
    assert curve(80) == 0.0  # the free cubic is negative at q80; clipped
    assert curve(10) <= 1.0
    with pytest.raises(RestorekitError, match="outside this model's range"):
        curve(5)


def test_piecewise_linear_and_json_round_trip():
    curve = fit_curve(15, 75, {25: 0.2, 50: 0.6}, kind="piecewise")
    assert curve(37.5) == pytest.approx(0.4)
    again = StrengthCurve.from_dict(curve.to_dict())
    assert again(37.5) == curve(37.5)
    assert StrengthCurve.linear(15, 75)(45) == pytest.approx(0.5)
