"""Gradient descent with a fixed step or a backtracking line search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .base import (
    MAX_ITER,
    STALLED,
    Function,
    OptimizeResult,
    Progress,
    check_stopping,
    converged_message,
    finite,
    stalled,
    sufficient_decrease,
)


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
    backtracking: starting from the last accepted step (``initial_step`` at first, and
    ``grow`` times longer after a step accepted at its first trial), the step is
    multiplied by ``shrink`` until it decreases the loss enough.
    "Enough" is the Armijo condition ``f(t) <= f(0) - c1 t ||g||^2``; but where the loss
    changes by at most ``approx_tol |f(0)|``, so that rounding error could decide that
    test either way, its derivative form from Hager & Zhang's approximate Wolfe
    conditions (SIAM J. Optim. 16, 2005) decides instead:
    ``g(t).g >= -(1 - 2 c1) ||g||^2`` (the two agree exactly on quadratics). The
    gradient at the trial point comes with every evaluation, so this costs nothing, and
    it lets the search reach gradient norms far below ``sqrt(eps)``.

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
    """
    check_stopping(max_iter=max_iter, tol=tol, ftol=ftol, lr=lr)
    if resume is None:
        theta, step, nit, nfev, history = theta0, initial_step, 0, 0, []
    else:
        theta, step, nit, nfev = resume["theta"], resume["step"], resume["nit"], resume["nfev"]
        history = list(resume["history"])[:-1]  # its last entry is re-evaluated next
    theta = np.array(theta, dtype=np.float64)
    step = step if lr is None else lr
    f, g = fun(theta)
    nfev += 1
    history.append(f)

    def state() -> dict[str, Any]:
        return {
            "theta": theta.copy(),
            "step": step,
            "nit": nit,
            "nfev": nfev,
            "history": np.array(history),
        }

    def result(converged: bool, message: str, diverged: bool = False) -> OptimizeResult:
        return OptimizeResult(theta, f, g, nit, nfev, converged, message, diverged, history)

    if not finite(f, g):
        return result(False, "loss or gradient is not finite at the initial point", True)

    while True:
        g_norm2 = float(g @ g)
        if np.sqrt(g_norm2) <= tol:
            return result(True, converged_message(np.sqrt(g_norm2), tol))
        if nit >= max_iter:
            return result(False, MAX_ITER.format(max_iter=max_iter))

        trials = 0
        while True:
            theta_new = theta - step * g
            f_new, g_new = fun(theta_new)
            nfev += 1
            trials += 1
            if lr is not None or sufficient_decrease(
                f, f_new, -g_norm2, -float(g_new @ g), step, c1, approx_tol
            ):
                break
            step *= shrink
            if step < min_step:
                return result(
                    False,
                    "line search found no decrease; the loss is flat to "
                    "rounding error here (try a larger tol)",
                )
        taken = step
        if lr is None and trials == 1:
            step *= grow  # the first trial passed: try a longer step next time

        nit += 1
        if not finite(f_new, g_new):
            return result(False, f"loss or gradient became {f_new} at iteration {nit}", True)
        f_old = f
        theta, f, g = theta_new, f_new, g_new
        history.append(f)
        if callback is not None:
            callback(Progress(nit, f, float(np.linalg.norm(g)), taken, nfev, state))
        if stalled(f_old, f, ftol):
            return result(True, STALLED.format(ftol=ftol))
