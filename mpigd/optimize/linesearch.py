"""Backtracking: the one step-size search that gd, nesterov, newton and the L-BFGS
fallback share; each brings its own trial point and acceptance test."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from .base import finite, sufficient_decrease

Trial = TypeVar("Trial")


def backtrack(
    trial: Callable[[float], Trial],
    accept: Callable[[float, Trial], bool],
    step: float,
    *,
    shrink: float = 0.5,
    min_step: float = 0.0,
    max_trials: int | None = None,
) -> tuple[float, Trial, int] | None:
    """Shrink ``step`` by ``shrink`` until ``accept(step, trial(step))``.

    ``trial(step)`` evaluates the point that ``step`` leads to (one evaluation of the
    objective); ``accept`` applies the optimiser's test to it. Returns the accepted
    ``(step, trial, number of trials)``, or None once ``max_trials`` trials have failed or
    the step falls below ``min_step``. Collective: no (``trial`` may be).
    """
    trials = 0
    while True:
        value = trial(step)
        trials += 1
        if accept(step, value):
            return step, value, trials
        if max_trials is not None and trials >= max_trials:
            return None
        step *= shrink
        if step < min_step:
            return None


def next_step(found: tuple[float, Trial, int], grow: float, *, fixed: bool) -> float:
    """The first trial step of the next search after ``found`` (what :func:`backtrack`
    returned): ``grow`` times the accepted step when its first trial passed (a longer one
    may pass too), else the accepted step; with a ``fixed`` step, that step.
    Collective: no."""
    step, _, trials = found
    if not fixed and trials == 1:
        step *= grow
    return step


def armijo_search(
    evaluate: Callable[[np.ndarray], tuple],
    theta: np.ndarray,
    f: float,
    g: np.ndarray,
    direction: np.ndarray,
    step: float = 1.0,
    *,
    c1: float,
    approx_tol: float,
    shrink: float = 0.5,
    min_step: float = 0.0,
    max_trials: int | None = None,
    fixed: bool = False,
    finite_only: bool = False,
    slope: float | None = None,
) -> tuple[float, tuple, int] | None:
    """Backtracking along a descent ``direction`` from ``theta`` with the Armijo test
    (:func:`~mpigd.optimize.base.sufficient_decrease`, in its derivative form where loss
    differences are rounding noise).

    ``evaluate(point)`` returns ``(f, g, ...)``. Returns ``(step, (point, f, g, ...),
    trials)`` as :func:`backtrack` does; ``fixed`` accepts the first trial; with
    ``finite_only`` a trial whose loss or gradient is not finite fails (otherwise the
    optimiser sees it and reports divergence). ``slope`` is ``g . direction`` when the
    caller knows it. Collective: as ``evaluate`` is.
    """
    slope = float(g @ direction) if slope is None else slope

    def trial(t: float) -> tuple:
        point = theta + t * direction
        return (point, *evaluate(point))

    def accept(t: float, value: tuple) -> bool:
        _, f_new, g_new = value[:3]
        if fixed:
            return True
        if finite_only and not finite(f_new, g_new):
            return False
        return sufficient_decrease(f, f_new, slope, float(g_new @ direction), t, c1, approx_tol)

    return backtrack(trial, accept, step, shrink=shrink, min_step=min_step, max_trials=max_trials)


def wolfe_search(
    phi: Callable[[float], tuple[float, float]],
    f0: float,
    slope0: float,
    step: float,
    *,
    c1: float,
    c2: float,
    max_iter: int,
    min_width: float = 1e-10,
) -> float | None:
    """A step ``t`` along a descent direction that meets the strong Wolfe conditions
    ``phi(t) <= f0 + c1 t slope0`` and ``|phi'(t)| <= c2 |slope0|``, or None.

    ``phi(t)`` returns the loss and its directional derivative at step ``t`` (one
    evaluation of the objective; ``f0``, ``slope0 < 0`` are their values at 0). The
    bracketing phase doubles the step from ``step`` until a bracket holds a Wolfe point;
    the zoom phase narrows it, trying the minimiser of the cubic that matches the losses
    and derivatives at both ends, kept inside the bracket, else its midpoint (Nocedal &
    Wright, Numerical Optimization, algorithms 3.5 and 3.6, and equation 3.59). A
    non-finite loss counts as too far. At most ``max_iter`` trials in each phase; the zoom
    gives up when the bracket is narrower than ``min_width`` times the first step (near a
    minimum, where losses differ by rounding, so the caller's fallback takes over sooner).
    Collective: as ``phi`` is.
    """

    def too_far(t: float, f: float, worse_than: float) -> bool:
        return not np.isfinite(f) or f > f0 + c1 * t * slope0 or f >= worse_than

    def curved_enough(d: float) -> bool:
        return abs(d) <= -c2 * slope0

    def zoom(lo, hi) -> float | None:
        # lo, hi: (step, loss, slope); lo has the lower loss and meets the decrease test
        for _ in range(max_iter):
            if abs(hi[0] - lo[0]) <= min_width * first_step:
                return None  # the bracket is rounding noise: no step to be found in it
            t = _cubic_step(lo, hi)
            f, d = phi(t)
            if too_far(t, f, lo[1]):
                hi = (t, f, d)
            else:
                if curved_enough(d):
                    return t
                if d * (hi[0] - lo[0]) >= 0:
                    hi = lo
                lo = (t, f, d)
        return None

    previous, first, first_step = (0.0, f0, slope0), True, step
    for _ in range(max_iter):
        f, d = phi(step)
        if too_far(step, f, np.inf if first else previous[1]):
            return zoom(previous, (step, f, d))
        if curved_enough(d):
            return step
        if d >= 0:
            return zoom((step, f, d), previous)
        previous, first, step = (step, f, d), False, 2.0 * step
    return None


def _cubic_step(a: tuple, b: tuple, margin: float = 0.1) -> float:
    """The minimiser of the cubic through the steps ``a`` and ``b`` (each ``(t, f, f')``),
    when it lies at least ``margin`` of the bracket inside it; else the midpoint."""
    (t_a, f_a, d_a), (t_b, f_b, d_b) = a, b
    width = t_b - t_a
    with np.errstate(all="ignore"):
        d1 = d_a + d_b - 3.0 * (f_a - f_b) / (t_a - t_b)
        d2 = np.sign(width) * np.sqrt(d1 * d1 - d_a * d_b)
        t = t_b - width * (d_b + d2 - d1) / (d_b - d_a + 2.0 * d2)
    low, high = sorted((t_a + margin * width, t_b - margin * width))
    return float(t) if np.isfinite(t) and low <= t <= high else t_a + 0.5 * width
