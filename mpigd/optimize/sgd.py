"""Mini-batch stochastic gradient descent with a rank-independent sampling scheme."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .base import Function, Iterations, OptimizeResult, Progress, check_stopping

BatchFunction = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


def batch_rows(seed: int, step: int, n_rows: int, batch_size: int) -> np.ndarray:
    """The global rows of mini-batch ``step``: drawn with replacement from a generator
    seeded by ``(seed, step)``, sorted. Every rank draws the same rows, whatever the rank
    count, and a resumed run draws what the uninterrupted one would have. Collective: no."""
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

    Collective: as ``fun`` and ``batch_fun`` are.
    """
    check_stopping(max_iter=max_iter, tol=tol, ftol=ftol, lr=lr)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lr = 0.5 if lr is None else lr
    steps_per_epoch = -(-n_rows // batch_size)
    run = Iterations(theta0, resume, max_iter=max_iter, tol=tol, ftol=ftol, callback=callback)
    fun = run.counting(fun)
    if stop := run.begin(*fun(run.theta)):
        return stop

    while not (stop := run.stop_before_step()):
        epoch = run.nit
        point, average = run.theta.copy(), np.zeros_like(run.theta)
        for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
            _, g_batch = batch_fun(point, batch_rows(seed, step, n_rows, batch_size))
            point -= lr / (1.0 + step / steps_per_epoch) * g_batch
            average += point
        average /= steps_per_epoch
        if stop := run.advance(average, *fun(average), lr / (2.0 + epoch)):
            break
    return stop
