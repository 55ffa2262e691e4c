"""Gradient descent with a fixed step or a backtracking line search."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .base import FLAT, Function, Iterations, OptimizeResult, Progress, check_stopping
from .linesearch import armijo_search, next_step


def gradient_descent(
    fun: Function,
    theta0: np.ndarray,
    *,
    lr: float | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    ftol: float = 1e-12,
    initial_step: float = 1.0,
    shrink: float = 0.5,
    grow: float = 2.0,
    c1: float = 1e-4,
    approx_tol: float = 1e-10,
    min_step: float = 1e-20,
    callback: Callable[[Progress], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> OptimizeResult:
    """Minimise ``fun`` by gradient descent, ``theta <- theta - step * grad``.

    With ``lr`` the step is fixed. Without it (the default) each step is found by
    backtracking: from the last accepted step (``initial_step`` at first, ``grow`` times
    longer after one accepted at its first trial), times ``shrink`` until the Armijo
    condition ``f(t) <= f(0) - c1 t ||g||^2`` holds, or, where the loss changes by at most
    ``approx_tol |f(0)|`` and rounding error could decide that test, its derivative form
    ``g(t).g >= -(1 - 2 c1) ||g||^2`` (:func:`~mpigd.optimize.base.sufficient_decrease`).
    That costs nothing (the gradient comes with every evaluation) and lets the search
    reach gradient norms far below ``sqrt(eps)``.

    Stops when ``||grad||_2 <= tol`` or the relative loss change of one iteration is
    below ``ftol`` (both count as converged; ``ftol=0`` turns the second test off),
    after ``max_iter`` iterations (not converged, not an error), when the loss or
    gradient stops being finite (diverged; the result keeps the last finite point), or
    when no step down to ``min_step`` decreases the loss.

    Parameters
    ----------
    fun : callable
        ``theta (p,) -> (loss, grad (p,))``; called once per trial point.
    theta0 : ndarray, shape (p,)
    lr : float, optional
        Fixed step size; turns the line search off.
    callback : callable, optional
        Called with a :class:`Progress` after every iteration.
    resume : dict, optional
        A ``Progress.state()`` from an earlier run: continue from it (``theta0`` is then
        ignored). With the same ``fun`` the iterates are bit-identical to a run that
        never stopped.

    Returns
    -------
    OptimizeResult

    Collective: as ``fun`` is: under MPI every rank runs it alike.
    """
    check_stopping(max_iter=max_iter, tol=tol, ftol=ftol, lr=lr)
    run = Iterations(theta0, resume, max_iter=max_iter, tol=tol, ftol=ftol, callback=callback)
    fun = run.counting(fun)
    step = lr or (initial_step if resume is None else resume["step"])
    run.extra_state = lambda: {"step": step}
    fixed = lr is not None
    search = partial(
        armijo_search, fun, c1=c1, approx_tol=approx_tol, shrink=shrink, min_step=min_step
    )
    if stop := run.begin(*fun(run.theta)):
        return stop

    while not (stop := run.stop_before_step()):
        found = search(run.theta, run.f, run.g, -run.g, step, fixed=fixed)
        if found is None:
            return run.result(False, FLAT)
        taken, (theta_new, f_new, g_new), _ = found
        step = next_step(found, grow, fixed=fixed)
        if stop := run.advance(theta_new, f_new, g_new, taken):
            break
    return stop
