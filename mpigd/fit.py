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
    first_row,
    inspect_dataset,
    memory_problem,
    read_block,
)
from .errors import Diverged, MpigdError, Preempted
from .losses import MODELS, class_label_problem, make_loss
from .model import LinearModel
from .objective import Objective, standardization
from .optimize import (
    OPTIMIZERS,
    L1Penalty,
    Optimizer,
    OptimizeResult,
    Progress,
    SingularSystem,
)
from .optimize import check_stopping as check_stopping_options
from .parallel import (
    agreed,
    allreduce_sum,
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
#: ``optimizer="auto"`` solves linear regression with up to this many parameters by the
#: normal equations (an (n+1)^2 Hessian per rank), beyond that by L-BFGS.
NORMAL_MAX_PARAMETERS = 4096


class ConvergenceWarning(UserWarning):
    """Training stopped before a stopping test was met."""


@dataclass(frozen=True)
class FitResult:
    """A trained model, the optimiser's record, and timings (seconds, max over ranks)."""

    model: LinearModel
    result: OptimizeResult
    timings: dict[str, float]


def choose_optimizer(model: str, l1: float, n_features: int) -> str:
    """What ``optimizer="auto"`` means: FISTA for L1, the normal equations for linear
    regression of moderate width, L-BFGS otherwise."""
    if l1 > 0:
        return "nesterov"
    if model == "linear" and n_features + 1 <= NORMAL_MAX_PARAMETERS:
        return "normal"
    return "lbfgs"


def optimizer_arguments(
    spec: Optimizer,
    objective: Objective,
    n_rows: int,
    *,
    lr=None,
    l1: float = 0.0,
    batch_size: int = 1024,
    seed: int = 0,
) -> dict:
    """The keyword arguments beyond ``fun`` and the stopping options that optimiser
    ``spec`` needs (``spec.needs``), taken from ``objective`` and the options."""
    mask = np.zeros(objective.size, dtype=bool)
    mask[: objective.n_features * objective.n_outputs] = True  # W, not the intercepts
    available = {
        "lr": lr,
        "penalty": L1Penalty(l1, mask) if l1 > 0 else None,
        "hess_fun": objective.hessian,
        "hessp": objective.hessp,
        "batch_fun": objective.batch,
        "n_rows": n_rows,
        "batch_size": batch_size,
        "seed": seed,
    }
    return {key: available[key] for key in spec.needs}


def _check_options(model, optimizer, l2, l1, class_weight, batch_size, **stopping) -> None:
    """Raise the same MpigdError on every rank for out-of-range options."""
    if model not in MODELS:
        raise MpigdError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if optimizer != "auto" and optimizer not in OPTIMIZERS:
        raise MpigdError(
            f"unknown optimizer {optimizer!r}; choose from auto, {', '.join(OPTIMIZERS)}"
        )
    for name, value in (("l2", l2), ("l1", l1)):
        if not (value >= 0 and np.isfinite(value)):
            raise MpigdError(f"{name} must be a finite number >= 0, got {value}")
    if class_weight not in (None, "balanced"):
        raise MpigdError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
    if class_weight and model == "linear":
        raise MpigdError("class weights need a classifier (logistic or softmax)")
    if batch_size < 1:
        raise MpigdError(f"batch_size must be >= 1, got {batch_size}")
    try:
        check_stopping_options(**stopping)
    except ValueError as exc:
        raise MpigdError(str(exc)) from exc
    if optimizer == "auto":
        return
    spec = OPTIMIZERS[optimizer]
    if l1 > 0 and not spec.l1:
        raise MpigdError(f"optimizer {optimizer!r} cannot handle an L1 penalty; use nesterov")
    if spec.least_squares and model != "linear":
        raise MpigdError(f"optimizer {optimizer!r} solves linear regression only")
    if spec.single_output and model == "softmax":
        raise MpigdError(f"optimizer {optimizer!r} needs a single output; use lbfgs for softmax")


def fit(
    data: str | os.PathLike,
    model: str = "logistic",
    *,
    comm=None,
    optimizer: str = "auto",
    l2: float = 0.0,
    l1: float = 0.0,
    lr: float | None = None,
    max_iter: int | None = None,
    tol: float = 1e-6,
    ftol: float = 1e-12,
    standardize: bool = False,
    weight_key: str | None = None,
    class_weight: str | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    x_key: str = "X",
    y_key: str = "y",
    callback: Callable[[Progress], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: str | os.PathLike | None = None,
) -> FitResult:
    """Train a linear, logistic or softmax regression on an HDF5 dataset.

    Every rank reads only its block of rows; each evaluation of the objective
    (:class:`mpigd.objective.Objective`) is one ``Allreduce``; every rank runs the same
    optimiser on the same reduced values and returns bit-identical parameters.

    Collective: yes. Call it on every rank of ``comm`` with the same arguments.

    Parameters
    ----------
    data : path
        HDF5 file with ``X`` (m, n) and ``y`` (m,) (names: ``x_key``, ``y_key``).
    model : {"linear", "logistic", "softmax"}
        Softmax labels are 0 .. K-1, with K found from the data.
    comm : mpi4py.MPI.Comm, optional
        Defaults to ``COMM_WORLD``.
    optimizer : str
        A key of :data:`mpigd.optimize.OPTIMIZERS`, or ``"auto"``
        (:func:`choose_optimizer`).
    l2, l1 : float
        Penalties ``(l2 / 2) ||W||^2 + l1 ||W||_1``; the intercepts are not penalised.
        ``l1 > 0`` needs ``nesterov`` (FISTA).
    lr : float, optional
        Step size: fixed for ``gd`` and ``nesterov`` (which otherwise search), the initial
        rate for ``sgd`` (default 0.5).
    max_iter, tol, ftol
        Stopping rules: iterations (epochs for ``sgd``; default: the optimiser's), gradient
        2-norm, relative loss change per iteration.
    standardize : bool
        Train on standardised features (mean 0, standard deviation 1, from one
        ``Allreduce`` at load time) without copying X; the penalties apply on that scale
        and the model is mapped back to raw features.
    weight_key : str, optional
        A dataset of row weights ``s_i >= 0``; the loss becomes ``sum s_i l_i / sum s_i``.
    class_weight : {"balanced"}, optional
        Weight classes by ``m / (K count_k)`` (times ``weight_key`` weights).
    batch_size, seed
        Mini-batch size and sampling seed for ``sgd``.
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
    _check_options(
        model,
        optimizer,
        l2,
        l1,
        class_weight,
        batch_size,
        max_iter=1 if max_iter is None else max_iter,
        tol=tol,
        ftol=ftol,
        lr=lr,
    )
    if checkpoint_every < 1:
        raise MpigdError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    info, local = read_rows(comm, data, x_key, y_key, weight_key, model)
    n_classes = _n_classes(comm, local) if model == "softmax" else 2
    loss = make_loss(model, n_classes)
    weights = _weights(comm, local, class_weight, n_classes)
    scaling = standardization(comm, local.X, first_row(info)) if standardize else None
    read_seconds = wtime() - start

    if optimizer == "auto":
        optimizer = choose_optimizer(model, l1, info.n_features)
    spec = OPTIMIZERS[optimizer]
    options = {
        "model": model,
        "l2": l2,
        "l1": l1,
        "standardize": bool(standardize),
        "weight_key": weight_key or "",
        "class_weight": class_weight or "",
        "n_outputs": loss.n_outputs,
    }
    if optimizer == "sgd":
        options.update(batch_size=batch_size, seed=seed)
    run = None
    if checkpoint is not None or resume is not None:
        with agreed(comm, root=0):
            run = {**options, **fingerprint(info)} if comm.rank == 0 else None
    state = None if resume is None else _resume_state(comm, resume, optimizer, run)

    with SignalWatch() if checkpoint is not None else nullcontext(None) as stop_flag:
        objective = Objective(
            comm,
            local.X,
            local.y,
            loss,
            l2=l2,
            weights=weights,
            scaling=scaling,
            stop_flag=stop_flag,
        )
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
        stopping = {
            "tol": tol,
            "ftol": ftol,
            **({} if max_iter is None else {"max_iter": max_iter}),
        }
        try:
            result = spec.run(
                objective,
                np.zeros(objective.size),
                callback=callback,
                resume=state,
                **stopping,
                **optimizer_arguments(
                    spec, objective, info.n_rows, lr=lr, l1=l1, batch_size=batch_size, seed=seed
                ),
            )
        except SingularSystem as exc:
            raise MpigdError(
                f"the normal equations are singular ({exc}): collinear or "
                "constant features; use --l2 > 0 or another optimizer"
            ) from exc
    if result.diverged:
        raise Diverged(
            f"training diverged: {result.message}; use a smaller --lr (or none, for the "
            "line search) or --standardize"
        )
    if not result.converged:
        warn0(comm, f"not converged: {result.message}", ConvergenceWarning)

    t = objective.timings
    elapsed = [read_seconds, t.compute, t.allreduce, wtime() - start]
    timings = dict(zip(TIMING_KEYS, max_over_ranks(comm, elapsed).tolist(), strict=True))
    record = {
        **options,
        "optimizer": optimizer,
        "lr": "default" if lr is None else lr,
        "max_iter": "default" if max_iter is None else max_iter,
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
    arrays = {"loss_history": np.array(result.history)}
    if scaling is not None:
        arrays.update(feature_mean=scaling.mean, feature_std=scaling.std)
    fitted = LinearModel.from_theta(
        model, objective.raw(result.x), info.n_features, loss.n_outputs, record, arrays
    )
    return FitResult(fitted, result, timings)


def read_rows(
    comm, data, x_key, y_key, weight_key, model, n_features: int | None = None
) -> tuple[DatasetInfo, LocalData]:
    """Check the file, this rank's memory and its rows, agreeing on every failure: the
    labels must suit ``model`` (unless ``y_key`` is None) and, when given, X must have
    ``n_features`` columns. Collective: yes."""
    with agreed(comm):
        info = inspect_dataset(data, x_key, y_key, weight_key)
        if n_features is not None and info.n_features != n_features:
            raise MpigdError(
                f"{info.path}: '{x_key}' has {info.n_features} features but the model has "
                f"{n_features}"
            )
    budget = memory_per_rank(comm)
    with agreed(comm):
        problem = memory_problem(info, comm.rank, comm.size, budget)
        if problem:
            raise MpigdError(problem)
    with agreed(comm):
        local = read_block(info, comm.rank, comm.size)
        if y_key is None:
            return info, local
        check = class_label_problem if model == "softmax" else make_loss(model).label_problem
        problem = check(local.y)
        if problem:
            raise MpigdError(f"{info.path}: '{y_key}': {problem}")
    return info, local


def _n_classes(comm, local: LocalData) -> int:
    """K = the largest label over all ranks + 1 (one Allreduce)."""
    largest = local.y.max() if len(local.y) else -1.0
    n_classes = int(max_over_ranks(comm, [largest])[0]) + 1
    if n_classes < 2:
        raise MpigdError(f"softmax needs at least 2 classes; the labels have {n_classes}")
    return n_classes


def _weights(comm, local: LocalData, class_weight, n_classes: int) -> np.ndarray | None:
    """Row weights: the file's, times balanced class weights ``S / (K S_k)``, with ``S_k``
    the weight of class k (its count without row weights; sums by Allreduce), as
    scikit-learn's ``class_weight="balanced"`` does."""
    weights = local.weights
    if class_weight == "balanced":
        labels = local.y.astype(np.intp)
        counts = np.bincount(labels, weights=weights, minlength=n_classes).astype(np.float64)
        allreduce_sum(comm, counts)
        per_class = np.divide(
            counts.sum(), n_classes * counts, out=np.zeros(n_classes), where=counts > 0
        )
        by_class = per_class[labels]
        weights = by_class if weights is None else weights * by_class
    if weights is not None:
        total = np.array([weights.sum()])
        allreduce_sum(comm, total)
        if not total[0] > 0:
            raise MpigdError(f"the row weights sum to {total[0]:g}; they must sum to more than 0")
    return weights


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
