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
