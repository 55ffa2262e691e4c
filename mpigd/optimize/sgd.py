"""Mini-batch stochastic gradient descent with a rank-independent sampling scheme."""

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
)

BatchFunction = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


def batch_rows(seed: int, step: int, n_rows: int, batch_size: int) -> np.ndarray:
    """The global rows of mini-batch ``step``: drawn with replacement from a generator
    seeded by ``(seed, step)``, sorted. Every rank draws the same rows, whatever the rank
    count, and a resumed run draws what the uninterrupted one would have."""
    return np.sort(np.random.default_rng([seed, step]).integers(0, n_rows, batch_size))


def sgd(
    fun: Function,
    theta0: np.ndarray,
    *,
    batch_fun: BatchFunction,
    n_rows: int,
    batch_size: int = 1024,
    lr: float | None = None,
    seed: int = 0,
    max_iter: int = 20,
    tol: float = 1e-6,
    ftol: float = 1e-12,
    callback: Callable[[Progress], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> OptimizeResult:
    """Minimise ``fun`` by mini-batch SGD; ``max_iter`` counts epochs.

    An epoch is ``ceil(n_rows / batch_size)`` steps. Step ``t`` draws ``batch_size``
    global rows (:func:`batch_rows`), gets the batch's mean gradient from ``batch_fun``
    (one reduction) and moves by ``lr / (1 + t / steps_per_epoch)`` (default ``lr``:
    0.5), a step size that decays like ``1/t`` once past the first epoch. After each
    epoch the iterate averaged over that epoch (Polyak-Ruppert averaging, which cancels
    much of the gradient noise) becomes the new iterate, and ``fun`` evaluates the full
    loss and gradient on it for the stopping tests and the progress report.
    """
    check_stopping(max_iter=max_iter, tol=tol, ftol=ftol, lr=lr)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lr = 0.5 if lr is None else lr
    steps_per_epoch = -(-n_rows // batch_size)
    if resume is None:
        theta, nit, nfev, history = theta0, 0, 0, []
    else:
        theta, nit, nfev = resume["theta"], resume["nit"], resume["nfev"]
        history = list(resume["history"])[:-1]
    theta = np.array(theta, dtype=np.float64)
    f, g = fun(theta)
    nfev += 1
    history.append(f)

    def state() -> dict[str, Any]:
        return {"theta": theta.copy(), "nit": nit, "nfev": nfev, "history": np.array(history)}

    def result(converged: bool, message: str, diverged: bool = False) -> OptimizeResult:
        return OptimizeResult(theta, f, g, nit, nfev, converged, message, diverged, history)

    if not finite(f, g):
        return result(False, "loss or gradient is not finite at the initial point", True)

    while True:
        g_norm = float(np.linalg.norm(g))
        if g_norm <= tol:
            return result(True, converged_message(g_norm, tol))
        if nit >= max_iter:
            return result(False, MAX_ITER.format(max_iter=max_iter))

        point, average = theta.copy(), np.zeros_like(theta)
        for step in range(nit * steps_per_epoch, (nit + 1) * steps_per_epoch):
            _, g_batch = batch_fun(point, batch_rows(seed, step, n_rows, batch_size))
            point -= lr / (1.0 + step / steps_per_epoch) * g_batch
            average += point
        average /= steps_per_epoch
        f_new, g_new = fun(average)
        nfev += 1
        nit += 1
        if not finite(f_new, g_new):
            return result(False, f"loss or gradient became {f_new} in epoch {nit}", True)
        f_old = f
        theta, f, g = average, f_new, g_new
        history.append(f)
        if callback is not None:
            callback(Progress(nit, f, float(np.linalg.norm(g)), lr / (1.0 + nit), nfev, state))
        if stalled(f_old, f, ftol):
            return result(True, STALLED.format(ftol=ftol))
