"""The training driver: data -> objective -> optimiser -> model, on every rank.

This is the only module that defaults the communicator to ``COMM_WORLD``; the command
line calls :func:`fit`, and so can Python code run under ``mpiexec``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from . import __version__
from .data import inspect_dataset, memory_problem, read_block
from .errors import Diverged, MpigdError
from .losses import LOSSES
from .model import LinearModel
from .objective import Objective
from .optimize import OPTIMIZERS, OptimizeResult, Progress, check_stopping
from .parallel import (
    agreed,
    default_comm,
    library_version,
    max_over_ranks,
    memory_per_rank,
    warn0,
    wtime,
)

TIMING_KEYS = ("read", "compute", "allreduce", "total")


class ConvergenceWarning(UserWarning):
    """Training stopped before a stopping test was met."""


@dataclass(frozen=True)
class FitResult:
    """A trained model, the optimiser's record, and timings (seconds, max over ranks)."""

    model: LinearModel
    result: OptimizeResult
    timings: dict[str, float]


def _check_options(model: str, optimizer: str, l2: float, **stopping) -> None:
    """Raise the same MpigdError on every rank for out-of-range options."""
    if model not in LOSSES:
        raise MpigdError(f"unknown model {model!r}; choose from {', '.join(LOSSES)}")
    if optimizer not in OPTIMIZERS:
        raise MpigdError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if not (l2 >= 0 and np.isfinite(l2)):
        raise MpigdError(f"l2 must be a finite number >= 0, got {l2}")
    try:
        check_stopping(**stopping)
    except ValueError as exc:
        raise MpigdError(str(exc)) from exc


def fit(
    data: str | os.PathLike,
    model: str = "logistic",
    *,
    comm=None,
    optimizer: str = "gd",
    l2: float = 0.0,
    lr: float | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    ftol: float = 1e-12,
    x_key: str = "X",
    y_key: str = "y",
    callback: Callable[[Progress], None] | None = None,
) -> FitResult:
    """Train a linear (``model="linear"``) or logistic regression on an HDF5 dataset.

    Every rank reads only its block of rows; each evaluation of the objective
    (:class:`mpigd.objective.Objective`) is one ``Allreduce``; every rank runs the same
    optimiser on the same reduced values and returns bit-identical parameters.

    Collective: yes. Call it on every rank of ``comm`` with the same arguments.

    Parameters
    ----------
    data : path
        HDF5 file with ``X`` (m, n) and ``y`` (m,) (names: ``x_key``, ``y_key``).
    model : {"linear", "logistic"}
    comm : mpi4py.MPI.Comm, optional
        Defaults to ``COMM_WORLD``.
    optimizer : str
        A key of :data:`mpigd.optimize.OPTIMIZERS`.
    l2 : float
        Ridge penalty ``(l2 / 2) ||w||^2``; the intercept is not penalised.
    lr : float, optional
        Fixed step size; by default a backtracking line search chooses the steps.
    max_iter, tol, ftol
        Stopping rules: iterations, gradient 2-norm, relative loss change per iteration.
    callback : callable, optional
        Called on every rank with a :class:`~mpigd.optimize.Progress` after each iteration.

    Returns
    -------
    FitResult

    Raises
    ------
    MpigdError
        Bad options or data, or divergence; raised on every rank alike.
    """
    comm = default_comm(comm)
    start = wtime()
    _check_options(model, optimizer, l2, lr=lr, max_iter=max_iter, tol=tol, ftol=ftol)
    loss = LOSSES[model]

    with agreed(comm):
        info = inspect_dataset(data, x_key, y_key)
    budget = memory_per_rank(comm)
    with agreed(comm):
        problem = memory_problem(info, comm.rank, comm.size, budget)
        if problem:
            raise MpigdError(problem)
    with agreed(comm):
        local = read_block(info, comm.rank, comm.size)
        problem = loss.label_problem(local.y)
        if problem:
            raise MpigdError(f"{info.path}: '{y_key}': {problem}")
    read_seconds = wtime() - start

    objective = Objective(comm, local.X, local.y, loss, l2=l2)
    theta0 = np.zeros(info.n_features + 1)
    result = OPTIMIZERS[optimizer](
        objective, theta0, lr=lr, max_iter=max_iter, tol=tol, ftol=ftol, callback=callback
    )
    if result.diverged:
        raise Diverged(
            f"training diverged: {result.message}; use a smaller --lr (or none, for the "
            "line search) or standardise the features"
        )
    if not result.converged:
        warn0(comm, f"not converged: {result.message}", ConvergenceWarning)

    t = objective.timings
    elapsed = [read_seconds, t.compute, t.allreduce, wtime() - start]
    timings = dict(zip(TIMING_KEYS, max_over_ranks(comm, elapsed).tolist(), strict=True))
    record = {
        "l2": l2,
        "optimizer": optimizer,
        "lr": "line search" if lr is None else lr,
        "max_iter": max_iter,
        "tol": tol,
        "ftol": ftol,
        "iterations": result.nit,
        "function_evals": result.nfev,
        "allreduces": objective.n_evals,
        "converged": result.converged,
        "message": result.message,
        "final_loss": result.fun,
        "grad_norm": result.grad_norm,
        "ranks": comm.size,
        "n_rows": info.n_rows,
        "n_features": info.n_features,
        "data_path": os.path.abspath(info.path),
        "x_key": x_key,
        "y_key": y_key,
        "mpigd_version": __version__,
        "mpi_library": library_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **{f"time_{key}": value for key, value in timings.items()},
    }
    x = result.x
    fitted = LinearModel(model, x[:-1].copy(), float(x[-1]), record, np.array(result.history))
    return FitResult(fitted, result, timings)
