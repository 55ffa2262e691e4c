"""Nesterov's accelerated gradient, with an optional L1 penalty (FISTA)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import (
    FLAT,
    Function,
    Iterations,
    OptimizeResult,
    Progress,
    check_stopping,
)
from .linesearch import backtrack


@dataclass(frozen=True)
class L1Penalty:
    """``strength * sum |theta[mask]|`` (``mask`` leaves the intercepts out).

    Its proximal map is soft-thresholding, which sets small entries exactly to zero.
    """

    strength: float
    mask: np.ndarray

    def value(self, theta: np.ndarray) -> float:
        return self.strength * float(np.abs(theta[self.mask]).sum())

    def prox(self, theta: np.ndarray, step: float) -> np.ndarray:
        out = theta.copy()
        shrunk = np.abs(theta[self.mask]) - step * self.strength
        out[self.mask] = np.sign(theta[self.mask]) * np.maximum(shrunk, 0.0)
        return out


def accelerated_gradient(
    fun: Function,
    theta0: np.ndarray,
    *,
    penalty: L1Penalty | None = None,
    lr: float | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    ftol: float = 1e-12,
    initial_step: float = 1.0,
    shrink: float = 0.5,
    grow: float = 1.25,
    approx_tol: float = 1e-10,
    min_step: float = 1e-20,
    callback: Callable[[Progress], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> OptimizeResult:
    """Minimise ``fun(theta) + penalty(theta)`` by accelerated proximal gradient.

    FISTA (Beck & Teboulle, SIAM J. Imaging Sci. 2, 2009) with backtracking: from the
    extrapolated point ``y``, the step ``x+ = prox(y - t g(y), t)`` is accepted when the
    quadratic upper bound ``f(x+) <= f(y) + g(y).d + |d|^2 / (2 t)`` holds (``d = x+ - y``),
    or, where loss differences are rounding noise, its derivative form
    ``(g(x+) - g(y)).d <= |d|^2 / t``. Momentum restarts when the loss goes up or the step
    turns against the momentum (O'Donoghue & Candes, Found. Comput. Math. 15, 2015), which
    keeps the method fast on strongly convex problems. Without a penalty this is
    Nesterov's accelerated gradient. ``lr`` fixes the step.

    Stops when the prox-gradient residual ``|theta - prox(theta - g, 1)|`` (the gradient
    norm without a penalty) is at most ``tol``, on a stalled loss (``ftol``), or after
    ``max_iter`` iterations; reports divergence like :func:`gradient_descent`.
    The loss reported is ``fun + penalty``.

    Collective: as ``fun`` is.
    """
    check_stopping(max_iter=max_iter, tol=tol, ftol=ftol, lr=lr)
    h = penalty.value if penalty is not None else (lambda theta: 0.0)
    prox = penalty.prox if penalty is not None else (lambda theta, step: theta)
    run = Iterations(
        theta0,
        resume,
        max_iter=max_iter,
        tol=tol,
        ftol=ftol,
        callback=callback,
        residual=lambda theta, g: theta - prox(theta - g, 1.0),
    )
    fun = run.counting(fun)
    if resume is None:
        step, momentum, x_prev = initial_step, 1.0, run.theta.copy()
    else:
        step, momentum = resume["step"], resume["momentum"]
        x_prev = np.array(resume["theta_prev"], dtype=np.float64)
    step = lr or step
    run.extra_state = lambda: {"step": step, "momentum": momentum, "theta_prev": x_prev.copy()}
    f_x, g_x = fun(run.theta)  # the smooth part; run.f holds the total with the penalty
    if stop := run.begin(f_x + h(run.theta), g_x):
        return stop

    while not (stop := run.stop_before_step()):
        x = run.theta
        next_momentum = (1.0 + np.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
        beta = (momentum - 1.0) / next_momentum
        if beta == 0.0 or np.array_equal(x, x_prev):
            y, f_y, g_y = x, f_x, g_x
        else:
            y = x + beta * (x - x_prev)
            f_y, g_y = fun(y)
        found = _prox_search(
            fun,
            prox,
            y,
            f_y,
            g_y,
            step,
            fixed=lr is not None,
            approx_tol=approx_tol,
            shrink=shrink,
            min_step=min_step,
        )
        if found is None:
            return run.result(False, FLAT)
        step, (x_new, f_new, g_new), trials = found
        taken = step
        if lr is None and trials == 1:
            step *= grow
        F_new = f_new + h(x_new)
        if F_new > run.f or float((y - x_new) @ (x_new - x)) > 0:
            momentum, x_prev = 1.0, x_new  # restart: no momentum into the next step
        else:
            momentum, x_prev = next_momentum, x
        f_x, g_x = f_new, g_new
        if stop := run.advance(x_new, F_new, g_new, taken):
            break
    return stop


def _prox_search(fun, prox, y, f_y, g_y, step, *, fixed, approx_tol, shrink, min_step):
    """Backtracking from ``y`` along the prox-gradient step, accepted by the quadratic
    upper bound (:func:`_upper_bound_holds`), or at once when ``fixed``."""

    def trial(t: float) -> tuple:
        x = prox(y - t * g_y, t)
        return (x, *fun(x))

    def accept(t: float, value: tuple) -> bool:
        x, f_new, g_new = value
        return fixed or _upper_bound_holds(f_y, g_y, f_new, g_new, x - y, t, approx_tol)

    return backtrack(trial, accept, step, shrink=shrink, min_step=min_step)


def _upper_bound_holds(f_y, g_y, f_new, g_new, d, step, approx_tol) -> bool:
    d2 = float(d @ d)
    if abs(f_new - f_y) <= approx_tol * abs(f_y):
        return bool((g_new - g_y) @ d <= d2 / step)
    return bool(f_new <= f_y + g_y @ d + d2 / (2.0 * step))
