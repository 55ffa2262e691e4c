"""The training driver: data -> objective -> optimiser -> model, on every rank.

This is the only module that defaults the communicator to ``COMM_WORLD``; the command
line calls :func:`fit`, and so can Python code run under ``mpiexec``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from . import __version__
from .checkpoint import Checkpoint, load_checkpoint
from .data import (
    DatasetInfo,
    LocalData,
    fingerprint,
    inspect_dataset,
    memory_problem,
    read_block,
)
from .errors import Diverged, MpigdError, Preempted
from .losses import LOSSES
from .model import LinearModel
from .objective import Objective
from .optimize import OPTIMIZERS, OptimizeResult, Progress, check_stopping
from .parallel import (
    agreed,
    bcast_from_root,
    default_comm,
    library_version,
    max_over_ranks,
    memory_per_rank,
    warn0,
    wtime,
)
from .preemption import SignalWatch

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
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: str | os.PathLike | None = None,
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
    checkpoint : path, optional
        Rank 0 writes the optimiser's full state here (atomically) every
        ``checkpoint_every`` iterations. While it is set, SIGTERM and SIGUSR1 make every
        rank finish the current iteration, write the checkpoint and raise
        :class:`~mpigd.errors.Preempted`.
    resume : path, optional
        Continue from this checkpoint. It must come from the same dataset, model,
        objective options and optimizer; another rank count is allowed (with a warning).
        With the same rank count the result is bit-identical to a run that never stopped.

    Returns
    -------
    FitResult

    Raises
    ------
    MpigdError
        Bad options, data or checkpoint; :class:`~mpigd.errors.Diverged` if the loss
        becomes NaN or infinite; :class:`~mpigd.errors.Preempted` after a signal. Raised
        on every rank alike.
    """
    comm = default_comm(comm)
    start = wtime()
    _check_options(model, optimizer, l2, lr=lr, max_iter=max_iter, tol=tol, ftol=ftol)
    if checkpoint_every < 1:
        raise MpigdError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    loss = LOSSES[model]
    info, local = _read(comm, data, x_key, y_key, loss)
    read_seconds = wtime() - start

    run = None
    if checkpoint is not None or resume is not None:
        with agreed(comm, root=0):
            run = {"model": model, "l2": l2, **fingerprint(info)} if comm.rank == 0 else None
    state = None if resume is None else _resume_state(comm, resume, optimizer, run)

    with SignalWatch() if checkpoint is not None else nullcontext(None) as stop_flag:
        objective = Objective(comm, local.X, local.y, loss, l2=l2, stop_flag=stop_flag)
        if checkpoint is not None:
            callback = _checkpointing(
                comm,
                callback,
                objective,
                stop_flag,
                Path(checkpoint),
                checkpoint_every,
                optimizer,
                run,
            )
        result = OPTIMIZERS[optimizer](
            objective,
            np.zeros(info.n_features + 1),
            lr=lr,
            max_iter=max_iter,
            tol=tol,
            ftol=ftol,
            callback=callback,
            resume=state,
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
        "resumed_from": "" if resume is None else os.path.abspath(resume),
        "mpigd_version": __version__,
        "mpi_library": library_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **{f"time_{key}": value for key, value in timings.items()},
    }
    x = result.x
    fitted = LinearModel(model, x[:-1].copy(), float(x[-1]), record, np.array(result.history))
    return FitResult(fitted, result, timings)


def _read(comm, data, x_key, y_key, loss) -> tuple[DatasetInfo, LocalData]:
    """Check the file, this rank's memory and its rows, agreeing on every failure."""
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
    return info, local


def _resume_state(comm, path, optimizer: str, run: dict | None) -> dict:
    """Rank 0 reads and checks the checkpoint; every rank gets its state."""
    with agreed(comm, root=0):
        if comm.rank == 0:
            saved = load_checkpoint(path)
            problem = saved.mismatch(optimizer, run)
            if problem:
                raise MpigdError(f"cannot resume from {path}: {problem}")
            if saved.ranks != comm.size:
                warn0(
                    comm,
                    f"resuming with {comm.size} ranks from a checkpoint written by "
                    f"{saved.ranks}: the state does not depend on the rank count, but sums "
                    "are added in another order, so the last bits can differ from a run "
                    "that never stopped",
                )
    return bcast_from_root(comm, saved.state if comm.rank == 0 else None)


def _checkpointing(
    comm, callback, objective, stop_flag, path: Path, every: int, optimizer: str, run: dict | None
):
    """Wrap ``callback``: write a checkpoint every ``every`` iterations, and on a signal
    (reduced with the objective, so every rank sees it in the same iteration) write one
    and raise Preempted."""

    def on_iteration(progress: Progress) -> None:
        if callback is not None:
            callback(progress)
        stop = objective.stop_requested
        if stop or progress.nit % every == 0:
            with agreed(comm, root=0):
                if comm.rank == 0:
                    try:
                        Checkpoint(optimizer, progress.state(), run, comm.size).save(path)
                    except OSError as exc:
                        raise MpigdError(f"cannot write checkpoint {path}: {exc}") from exc
        if stop:
            why = stop_flag.received or "a signal on another rank"
            raise Preempted(
                f"{why} at iteration {progress.nit}; checkpoint written to "
                f"{path}; continue with --resume {path}"
            )

    return on_iteration
