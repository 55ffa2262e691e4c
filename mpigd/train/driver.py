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
from pathlib import Path

import numpy as np

from ..errors import Diverged, Interrupted, MpigdError
from ..host import process_age
from ..io.dataset import LocalData, fingerprint
from ..io.stream import head, like
from ..kernels import is_sparse
from ..model import LinearModel
from ..objective import Objective
from ..optimize import OPTIMIZERS, OptimizeResult, Progress, SingularSystem
from ..optimize.newton import SINGULAR_MESSAGE
from ..parallel import (
    default_comm,
    gather_all,
    max_over_ranks,
    on_root,
    rank_local,
    warn0,
    wtime,
)
from ..scaling import Scaling, standardization
from ..threads import limited
from .checkpoint import checkpointing, resume_state
from .labels import row_weights
from .options import TrainOptions, choose_optimizer, hessian_problem, optimizer_arguments
from .preemption import SignalWatch
from .problem import Problem, load_problem
from .record import TIMING_KEYS, fitted_model, run_record, timed
from .start import initial_theta


class ConvergenceWarning(UserWarning):
    """Training stopped before a stopping test was met."""


@dataclass(frozen=True)
class FitResult:
    """A trained model, the optimiser's record, and timings (seconds, max over ranks)."""

    model: LinearModel
    result: OptimizeResult
    timings: dict[str, float]


@limited
def fit(
    data: str | os.PathLike | LocalData,
    model: str = "logistic",
    *,
    comm=None,
    callback: Callable[[Progress], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    init: LinearModel | str | os.PathLike | None = None,
    **options,
) -> FitResult:
    """Train a linear, logistic or softmax regression on an HDF5 dataset.

    Every rank reads only its block of rows; each evaluation of the objective
    (:class:`mpigd.objective.Objective`) is one ``Allreduce``; every rank runs the same
    optimiser on the same reduced values and returns bit-identical parameters.
    Collective: yes: every rank of ``comm`` calls it with the same arguments.

    Parameters
    ----------
    data : path, or LocalData
        HDF5 file with ``X`` (m, n) and ``y`` (m,), or this rank's rows as
        :func:`mpigd.io.rows.read_rows` reads them (the read is then skipped).
    model : {"linear", "logistic", "softmax"}
    comm : mpi4py.MPI.Comm, optional
        Defaults to ``COMM_WORLD``.
    callback : callable, optional
        Called on every rank with a :class:`~mpigd.optimize.Progress` after each iteration.
        Its ``state()`` is collective when L-BFGS holds its vectors in slices (65,536
        parameters or more on several ranks): call it on every rank, or on none.
    checkpoint : path, optional
        Rank 0 writes the optimiser's full state here (atomically) every
        ``checkpoint_every`` iterations; while it is set, SIGTERM and SIGUSR1 make every
        rank finish the iteration, write it and raise :class:`~mpigd.errors.Preempted`.
    resume : path, optional
        Continue from this checkpoint of the same data, model, objective options and
        optimizer (another rank count is allowed, with a warning). With the same rank
        count the result is bit-identical to a run that never stopped.
    init : LinearModel or path, optional
        Start from this model's parameters (a warm start: the same kind and shape).
    **options
        The training options of :class:`~mpigd.train.options.TrainOptions`:
        ``optimizer``, ``l2``, ``l1``, ``lr``, ``max_iter``, ``tol``, ``ftol``,
        ``standardize``, ``weight_key``, ``class_weight``, ``labels``, ``batch_size``,
        ``seed``, ``x_key``, ``y_key``, ``checkpoint_every``, ``folds``, ``fold_key``,
        ``exclude_fold``.

    Returns
    -------
    FitResult

    Raises
    ------
    MpigdError
        Bad options, data or checkpoint; :class:`~mpigd.errors.Diverged`, or
        :class:`~mpigd.errors.Preempted` after a signal; on every rank alike.
    """
    comm = default_comm(comm)
    start = wtime()
    options = TrainOptions(model=model, **options)
    if init is not None and resume is not None:
        raise MpigdError("init and resume exclude each other: a checkpoint has its own start")
    problem, weights, scaling = _load(comm, data, options)
    read_seconds = wtime() - start
    optimizer = _optimizer(comm, options, problem)
    settings = options.settings(optimizer, problem.loss.n_outputs)
    saved = checkpoint if checkpoint is None else (Path(checkpoint), options.checkpoint_every)
    saving, state, theta0 = _start(comm, problem, scaling, optimizer, settings, saved, resume, init)
    with SignalWatch() if checkpoint is not None else nullcontext(None) as stop_flag:
        objective = Objective(
            comm, problem.local.X, problem.local.y, problem.loss, l2=options.l2, weights=weights,
            scaling=scaling, stop_flag=stop_flag or (lambda: Interrupted.pending is not None),
        )  # fmt: skip
        norms: list[float] = []  # the gradient norm after each iteration, for plots
        callback = _callbacks(comm, objective, norms, callback, stop_flag, saving)
        # process start to the first evaluation, read excluded: interpreter, imports, checks
        startup = process_age() - read_seconds
        result = _optimize(objective, optimizer, theta0, callback, state, options, problem)
    timings = _timings(comm, [startup, read_seconds], objective, start)
    record = run_record(comm, optimizer, settings, options, result, objective, problem, resume)
    if problem.streamed:
        record.update(_stream_record(comm, problem.local.X))
    fitted = fitted_model(objective, result, norms, problem, {**record, **timed(timings)})
    return FitResult(fitted, result, timings)


def _load(comm, data, options: TrainOptions) -> tuple[Problem, np.ndarray | None, Scaling | None]:
    """The problem (:func:`load_problem`), with its row weights and the standardisation
    of its rows. Collective: yes."""
    problem = load_problem(comm, data, options)
    weights = row_weights(comm, problem.local, options.class_weight, problem.n_classes)
    scaling = None
    if problem.shift is not None:
        scaling = standardization(comm, problem.local.X, problem.shift)
    return problem, weights, scaling


def _start(comm, problem: Problem, scaling, optimizer, settings, saved, resume, init):
    """Where the optimiser starts: how it checkpoints (with ``saved`` = (path, every):
    (path, every, optimizer, what a checkpoint must match), else None), the state it
    resumes (or None), and the parameters (zeros, or a warm start's). Collective: yes."""
    run = None
    if saved is not None or resume is not None:
        run = on_root(comm, lambda: {**settings, **fingerprint(problem.info)})
    size = (problem.info.n_features + 1) * problem.loss.n_outputs
    state = None if resume is None else resume_state(comm, resume, optimizer, run, size)
    theta0 = np.zeros(size) if init is None else initial_theta(comm, init, problem, scaling)
    return None if saved is None else (*saved, optimizer, run), state, theta0


def _optimizer(comm, options: TrainOptions, problem: Problem) -> str:
    """The optimiser that trains: the one asked for, or what ``auto`` picks for this
    problem; the normal equations only where their matrix fits. Collective: yes."""
    optimizer = options.optimizer
    if optimizer == "auto":
        sparse = bool(max_over_ranks(comm, [float(is_sparse(like(problem.local.X)))])[0])
        optimizer = choose_optimizer(
            options.model,
            options.l1,
            problem.info.n_features,
            sparse=sparse,
            streamed=problem.streamed,
        )
    # problem.streamed is the same on every rank (all stream or none), and so the choice
    if optimizer == "sgd" and problem.streamed:
        raise MpigdError(
            "--optimizer sgd reads rows at random, which rows streamed from disk cannot "
            "give; use lbfgs, newton or gd (or more memory: --memory)"
        )
    size = (problem.info.n_features + 1) * problem.loss.n_outputs
    with rank_local(comm):
        too_big = hessian_problem(optimizer, size, problem.budget)
        if too_big:
            raise MpigdError(too_big)
    return optimizer


def _callbacks(comm, objective, norms, callback, stop_flag, saving):
    """What runs after each iteration: ``callback``, the gradient norm appended to
    ``norms``, and with ``saving`` = (path, every, optimizer, run) a checkpoint every
    ``every`` iterations and after a signal. Collective: yes (a checkpoint is agreed)."""
    callback = _recording(norms, callback, None if saving else objective)
    return checkpointing(comm, callback, objective, stop_flag, *saving) if saving else callback


def _timings(comm, before: list[float], objective, start: float) -> dict[str, float]:
    """Seconds of each phase of :data:`TIMING_KEYS`, the most over ranks: ``before``
    (start-up, read), the objective's compute and reductions, the whole. Collective: yes."""
    t = objective.timings
    elapsed = max_over_ranks(comm, [*before, t.compute, t.allreduce, wtime() - start])
    return dict(zip(TIMING_KEYS, elapsed.tolist(), strict=True))


def _stream_record(comm, X) -> dict:
    """What the record says of rows streamed from disk: the passes over them (the
    checking pass at load time included) and the bytes each rank read. Collective: yes."""
    read = gather_all(comm, int(X.bytes_read))
    return {"streamed": True, "passes": X.passes, "bytes_read_per_rank": np.array(read)}


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


#: Feature standard deviations further apart than this factor make the message on
#: running out of iterations suggest standardisation; they are estimated from the first
#: rows of each rank, at most this many (a bounded pass, with bounded temporaries).
SCALE_SPREAD = 10.0
SCALE_SAMPLE_ROWS = 2**14


def _scale_hint(comm, X_local) -> str:
    """What the message on running out of iterations adds where the features' standard
    deviations (over the first :data:`SCALE_SAMPLE_ROWS` rows of every rank) differ by
    more than :data:`SCALE_SPREAD`: that standardising them helps. Collective: yes."""
    with rank_local(comm):
        sample = head(X_local, SCALE_SAMPLE_ROWS)
    std = standardization(comm, sample, np.zeros(X_local.shape[1])).std
    spread = std[std > 0]
    if len(spread) < 2 or spread.max() <= SCALE_SPREAD * spread.min():
        return ""
    return (
        f"; the features' standard deviations differ {spread.max() / spread.min():.3g}-fold, "
        "which slows training down: try --standardize (standardize=True)"
    )


def _optimize(objective, optimizer, theta0, callback, state, options, problem) -> OptimizeResult:
    """Run the optimiser on the problem's training rows; a singular system or divergence
    is an error, running out of iterations a warning. Collective: yes (every evaluation
    is)."""
    spec = OPTIMIZERS[optimizer]
    extras = optimizer_arguments(spec, objective, problem.n_rows, options)
    try:
        result = spec.run(
            objective, theta0, callback=callback, resume=state, **options.stopping, **extras
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
        hint = ""
        if result.message.startswith("reached max_iter") and not options.standardize:
            hint = _scale_hint(objective.comm, problem.local.X)
        warn0(objective.comm, f"not converged: {result.message}{hint}", ConvergenceWarning)
    if result.message == SINGULAR_MESSAGE:
        warn0(objective.comm, result.message)
    return result
