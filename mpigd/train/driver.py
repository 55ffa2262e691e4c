"""The training driver: data -> objective -> optimiser -> model, on every rank.

:func:`fit` is the Python API and what ``mpigd train`` calls; under ``mpiexec`` every
rank calls it with the same arguments. It checks the options, loads this rank's rows
(:func:`mpigd.io.rows.read_rows`), builds the :class:`~mpigd.objective.Objective`, runs
the optimiser (with checkpoints and signals when asked) and returns the model with its
provenance.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import Diverged, Interrupted, MpigdError
from ..host import process_age
from ..io.dataset import DatasetInfo, LocalData, fingerprint, first_row
from ..io.rows import local_rows, read_rows
from ..kernels.losses import PointwiseLoss, make_loss
from ..model import LinearModel
from ..objective import Objective
from ..optimize import OPTIMIZERS, OptimizeResult, Progress, SingularSystem
from ..optimize.newton import SINGULAR_MESSAGE
from ..parallel import (
    allreduce_sum,
    default_comm,
    library_version,
    max_over_ranks,
    memory_per_rank,
    on_root,
    rank_local,
    warn0,
    wtime,
)
from ..scaling import Scaling, standardization
from .checkpoint import checkpointing, resume_state
from .labels import check_labels, encode, n_classes, row_weights, warn_about_empty_classes
from .options import (
    check_options,
    choose_optimizer,
    hessian_problem,
    optimizer_arguments,
    parameters_problem,
)
from .preemption import SignalWatch
from .start import first_local_row, fold_filter, initial_theta

TIMING_KEYS = ("startup", "read", "compute", "allreduce", "total")


class ConvergenceWarning(UserWarning):
    """Training stopped before a stopping test was met."""


@dataclass(frozen=True)
class FitResult:
    """A trained model, the optimiser's record, and timings (seconds, max over ranks)."""

    model: LinearModel
    result: OptimizeResult
    timings: dict[str, float]


@dataclass(frozen=True)
class _Problem:
    """This rank's share of the training problem, as loaded."""

    info: DatasetInfo
    local: LocalData
    loss: PointwiseLoss
    weights: np.ndarray | None
    scaling: Scaling | None
    budget: float  # bytes of data this rank may hold (parallel.memory_per_rank)
    n_rows: int  # training rows over all ranks (fewer than the file's without a fold)
    classes: np.ndarray | None = None  # the label values, with labels="auto"


def fit(
    data: str | os.PathLike | LocalData,
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
    init: LinearModel | str | os.PathLike | None = None,
    folds: int | None = None,
    fold_key: str | None = None,
    exclude_fold: int | None = None,
    labels: str = "index",
) -> FitResult:
    """Train a linear, logistic or softmax regression on an HDF5 dataset.

    Every rank reads only its block of rows; each evaluation of the objective
    (:class:`mpigd.objective.Objective`) is one ``Allreduce``; every rank runs the same
    optimiser on the same reduced values and returns bit-identical parameters.

    Collective: yes. Call it on every rank of ``comm`` with the same arguments.

    Parameters
    ----------
    data : path, or LocalData
        HDF5 file with ``X`` (m, n) and ``y`` (m,) (names: ``x_key``, ``y_key``), or
        this rank's rows as :func:`mpigd.io.rows.read_rows` read them for ``model`` and
        ``weight_key`` (the read is then skipped).
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
    init : LinearModel or path, optional
        Start from this model's parameters (a warm start): the same kind, features and
        classes.
    folds, fold_key, exclude_fold : optional
        Train on the rows outside fold ``exclude_fold``, with folds as ``mpigd.cv``
        assigns them: ``folds`` hashed with ``seed``, or read from dataset ``fold_key``
        (:mod:`mpigd.io.folds`), so one cell of a cross-validation can be
        reproduced on its own.
    labels : {"index", "auto"}
        ``index``: classifier labels are class indices (0/1, or 0 .. K-1). ``auto``: any
        label values (LIBSVM's -1/+1, say), mapped to 0 .. K-1 in sorted order; the
        model keeps them (``arrays["classes"]``) and predicts them.

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
    check_options(
        model,
        optimizer,
        l2,
        l1,
        class_weight,
        batch_size,
        checkpoint_every,
        max_iter=1 if max_iter is None else max_iter,
        tol=tol,
        ftol=ftol,
        lr=lr,
    )
    if init is not None and resume is not None:
        raise MpigdError("init and resume exclude each other: a checkpoint has its own start")
    check_labels(labels, model)
    fold_rows = fold_filter(folds, fold_key, exclude_fold, seed)
    problem = _load(
        comm, data, model, x_key, y_key, weight_key, class_weight, standardize, fold_rows, labels
    )
    read_seconds = wtime() - start
    info = problem.info
    if optimizer == "auto":
        optimizer = choose_optimizer(model, l1, info.n_features)
    size = (info.n_features + 1) * problem.loss.n_outputs
    with rank_local(comm):
        too_big = hessian_problem(optimizer, size, problem.budget)
        if too_big:
            raise MpigdError(too_big)
    options = {
        "model": model,
        "l2": l2,
        "l1": l1,
        "standardize": bool(standardize),
        "weight_key": weight_key or "",
        "class_weight": class_weight or "",
        "n_outputs": problem.loss.n_outputs,
    }
    if optimizer == "sgd":
        options.update(batch_size=batch_size, seed=seed)
    if labels == "auto":
        options.update(labels=labels)
    if exclude_fold is not None:
        options.update(folds=folds, fold_key=fold_key or "", exclude_fold=exclude_fold, seed=seed)
    run = None
    if checkpoint is not None or resume is not None:
        run = on_root(comm, lambda: {**options, **fingerprint(info)})
    state = None if resume is None else resume_state(comm, resume, optimizer, run, size)
    theta0 = (
        np.zeros(size)
        if init is None
        else initial_theta(
            comm, init, model, problem.info.n_features, problem.loss.n_outputs, problem.scaling
        )
    )

    with SignalWatch() if checkpoint is not None else nullcontext(None) as stop_flag:
        objective = Objective(
            comm,
            problem.local.X,
            problem.local.y,
            problem.loss,
            l2=l2,
            weights=problem.weights,
            scaling=problem.scaling,
            stop_flag=stop_flag or (lambda: Interrupted.pending is not None),
        )
        norms: list[float] = []  # the gradient norm after each iteration, for plots
        callback = _recording(norms, callback, objective if checkpoint is None else None)
        if checkpoint is not None:
            callback = checkpointing(
                comm,
                callback,
                objective,
                stop_flag,
                Path(checkpoint),
                checkpoint_every,
                optimizer,
                run,
            )
        extras = optimizer_arguments(
            OPTIMIZERS[optimizer],
            objective,
            problem.n_rows,
            lr=lr,
            l1=l1,
            batch_size=batch_size,
            seed=seed,
        )
        stopping = {"tol": tol, "ftol": ftol}
        if max_iter is not None:
            stopping["max_iter"] = max_iter
        # process start to the first evaluation, read excluded: interpreter, imports, checks
        startup = process_age() - read_seconds
        result = _optimize(objective, optimizer, theta0, callback, state, stopping, extras)

    t = objective.timings
    elapsed = [startup, read_seconds, t.compute, t.allreduce, wtime() - start]
    timings = dict(zip(TIMING_KEYS, max_over_ranks(comm, elapsed).tolist(), strict=True))
    record = {
        **options,
        "optimizer": optimizer,
        "lr": "default" if lr is None else lr,
        "max_iter": "default" if max_iter is None else max_iter,
        "tol": tol,
        "ftol": ftol,
        **_provenance(comm, result, objective, info, resume),
        **{f"time_{key}": value for key, value in timings.items()},
    }
    arrays = {"loss_history": np.array(result.history), "grad_norm_history": np.array(norms)}
    if problem.classes is not None:
        arrays["classes"] = problem.classes
    if problem.scaling is not None:
        arrays.update(feature_mean=problem.scaling.mean, feature_std=problem.scaling.std)
    fitted = LinearModel.from_theta(
        model,
        objective.raw(result.x),
        info.n_features,
        problem.loss.n_outputs,
        record,
        arrays,
    )
    return FitResult(fitted, result, timings)


def _load(
    comm, data, model, x_key, y_key, weight_key, class_weight, standardize, fold_rows, labels
) -> _Problem:
    """Read this rank's rows (only those outside the held-out fold, with ``fold_rows``)
    and derive the loss, row weights and scaling from all ranks' training rows; the
    class count comes from every row of the file, as in ``mpigd cv``. Collective: yes."""
    classes = None
    if isinstance(data, LocalData):  # rows read already (mpigd.cv, in-memory estimators)
        info, local = data.info, local_rows(comm, data, model)
    else:
        checked = None if labels == "auto" else model  # any values: checked by encode
        info, local = read_rows(comm, data, x_key, y_key, weight_key, checked)
        if labels == "auto":
            local, classes = encode(comm, local, model)
    count = n_classes(comm, local) if model == "softmax" else 2
    budget = memory_per_rank(comm)
    with rank_local(comm):
        n_outputs = count if model == "softmax" else 1
        problem = parameters_problem(model, info.n_features, n_outputs, len(local.y), budget)
        if problem:
            raise MpigdError(problem)
    n_rows = info.n_rows
    if fold_rows is not None:
        local = fold_rows(comm, local)
        kept = np.array([float(len(local.y))])
        allreduce_sum(comm, kept)
        n_rows = int(kept[0])
    if model != "linear":
        warn_about_empty_classes(comm, local, count)
    weights = row_weights(comm, local, class_weight, count)
    scaling = None
    if standardize:
        shift = on_root(
            comm, lambda: first_row(info) if info.path else first_local_row(local), share=True
        )
        scaling = standardization(comm, local.X, shift)
    loss = make_loss(model, count)
    return _Problem(info, local, loss, weights, scaling, budget, n_rows, classes)


def _recording(norms: list, callback, objective=None):
    """``callback``, also appending each iteration's gradient norm to ``norms``; with
    ``objective``, raising :class:`Interrupted` on every rank when a signal that Python
    swallowed (in a finaliser) reached any rank (reduced with the evaluations)."""

    def record(progress: Progress) -> None:
        if objective is not None and objective.stop_requested:
            raise Interrupted.agreed()
        norms.append(progress.grad_norm)
        if callback is not None:
            callback(progress)

    return record


def _optimize(objective, optimizer, theta0, callback, state, stopping, extras) -> OptimizeResult:
    """Run the optimiser; a singular system or divergence is an error, running out of
    iterations a warning. Collective: yes (every evaluation is)."""
    try:
        result = OPTIMIZERS[optimizer].run(
            objective,
            theta0,
            callback=callback,
            resume=state,
            **stopping,
            **extras,
        )
    except SingularSystem as exc:
        raise MpigdError(
            f"the normal equations are singular ({exc}): collinear or constant features; "
            "use l2 > 0 or another optimizer"
        ) from exc
    if result.diverged and result.nit == 0:
        raise MpigdError(
            f"training cannot start: {result.message}; the data's values overflow float64 "
            "arithmetic: rescale them"
        )
    if result.diverged:
        raise Diverged(
            f"training diverged: {result.message}; use a smaller lr (or none, for the "
            "line search) or standardize the features"
        )
    if not result.converged:
        warn0(objective.comm, f"not converged: {result.message}", ConvergenceWarning)
    if result.message == SINGULAR_MESSAGE:
        warn0(objective.comm, result.message)
    return result


def _provenance(comm, result: OptimizeResult, objective, info: DatasetInfo, resume) -> dict:
    """What the model file records of the run besides its options. Collective: no."""
    return {
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
        "data_path": os.path.abspath(info.path) if info.path else "(arrays in memory)",
        "x_key": info.x_key,
        "y_key": info.y_key,
        "resumed_from": "" if resume is None else os.path.abspath(resume),
        "mpigd_version": __version__,
        "mpi_library": library_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
