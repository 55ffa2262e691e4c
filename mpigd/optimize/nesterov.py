"""Nesterov's accelerated gradient, with an optional L1 penalty (FISTA)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .base import FLAT, Function, Iterations, OptimizeResult, Progress, check_stopping
from .linesearch import backtrack, next_step


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
    step, momentum, x_prev = _start(resume, initial_step, run.theta)
    step = lr or step
    run.extra_state = lambda: {"step": step, "momentum": momentum, "theta_prev": x_prev.copy()}
    fixed = lr is not None
    search = partial(
        _prox_search, fun, prox, approx_tol=approx_tol, shrink=shrink, min_step=min_step
    )
    f_x, g_x = fun(run.theta)  # the smooth part; run.f holds the total with the penalty
    if stop := run.begin(f_x + h(run.theta), g_x):
        return stop

    while not (stop := run.stop_before_step()):
        x = run.theta
        next_momentum, y, f_y, g_y = _extrapolate(fun, x, x_prev, momentum, f_x, g_x)
        found = search(y, f_y, g_y, step, fixed=fixed)
        if found is None:
            return run.result(False, FLAT)
        taken, (x_new, f_new, g_new), _ = found
        step = next_step(found, grow, fixed=fixed)
        F_new = f_new + h(x_new)
        if _restarts(F_new, run.f, y, x_new, x):
            momentum, x_prev = 1.0, x_new  # no momentum into the next step
        else:
            momentum, x_prev = next_momentum, x
        f_x, g_x = f_new, g_new
        if stop := run.advance(x_new, F_new, g_new, taken):
            break
    return stop


def _start(resume, initial_step: float, theta: np.ndarray) -> tuple:
    """The step, momentum and previous iterate to start from: a fresh start's, or those
    that ``resume`` holds."""
    if resume is None:
        return initial_step, 1.0, theta.copy()
    return resume["step"], resume["momentum"], np.array(resume["theta_prev"], dtype=np.float64)


def _extrapolate(fun, x, x_prev, momentum, f_x, g_x):
    """FISTA's next momentum ``t+ = (1 + sqrt(1 + 4 t^2)) / 2`` and extrapolated point
    ``y = x + beta (x - x_prev)``, ``beta = (t - 1) / t+``, with the loss and gradient
    there (those of ``x``, without an evaluation, when ``y`` is ``x``)."""
    next_momentum = (1.0 + np.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
    beta = (momentum - 1.0) / next_momentum
    if beta == 0.0 or np.array_equal(x, x_prev):
        return next_momentum, x, f_x, g_x
    y = x + beta * (x - x_prev)
    return next_momentum, y, *fun(y)


def _restarts(F_new: float, F: float, y, x_new, x) -> bool:
    """Whether momentum restarts after the step from ``x`` (loss ``F``) through ``y`` to
    ``x_new`` (loss ``F_new``): the loss went up, or the step turned against the momentum
    (O'Donoghue & Candes, Found. Comput. Math. 15, 2015)."""
    return bool(F_new > F) or float((y - x_new) @ (x_new - x)) > 0


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
