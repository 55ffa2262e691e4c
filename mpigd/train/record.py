"""What a trained model records of its run: the options that decided it, the optimiser's
outcome, the data, the software and the timings (:func:`run_record`), and the model file's
arrays (:func:`fitted_model`). Collective: no, anywhere here."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np

from .._version import __version__
from ..io.dataset import data_path
from ..model import LinearModel
from ..optimize import OptimizeResult
from ..parallel import library_version
from .options import TrainOptions
from .problem import Problem

#: The phases of a run whose seconds (the most over ranks) the record keeps.
TIMING_KEYS = ("startup", "read", "compute", "allreduce", "total")


def run_record(
    comm,
    optimizer: str,
    settings: dict,
    options: TrainOptions,
    result: OptimizeResult,
    objective,
    problem: Problem,
    resume,
) -> dict:
    """The model file's record of a run: ``settings`` (:meth:`TrainOptions.settings`),
    the optimiser and its stopping rules, what it reached, the kernels that summed (compiled
    or NumPy, and why NumPy), and the provenance."""
    info = problem.info
    return {
        **settings,
        "optimizer": optimizer,
        "lr": "default" if options.lr is None else options.lr,
        "max_iter": "default" if options.max_iter is None else options.max_iter,
        "tol": options.tol,
        "ftol": options.ftol,
        "iterations": result.nit,
        "function_evals": result.nfev,
        "allreduces": objective.n_evals,
        "kernels": objective.kernels.name,
        "kernels_reason": objective.kernels.reason or "",
        "converged": result.converged,
        "message": result.message,
        "final_loss": result.fun,
        "grad_norm": result.grad_norm,
        "ranks": comm.size,
        "n_rows": info.n_rows,
        "n_features": info.n_features,
        "data_path": data_path(info),
        "x_key": info.x_key,
        "y_key": info.y_key,
        "resumed_from": "" if resume is None else os.path.abspath(resume),
        "mpigd_version": __version__,
        "mpi_library": library_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def timed(timings: dict[str, float]) -> dict[str, float]:
    """The timings as record entries: ``time_read``, ``time_total``..."""
    return {f"time_{key}": value for key, value in timings.items()}


def fitted_model(
    objective, result: OptimizeResult, norms: list[float], problem: Problem, record: dict
) -> LinearModel:
    """The trained model on raw features, with ``record`` and the arrays of the run: the
    loss and gradient-norm histories, the label values (``labels="auto"``) and the
    standardisation's statistics."""
    arrays = {"loss_history": np.array(result.history), "grad_norm_history": np.array(norms)}
    if problem.classes is not None:
        arrays["classes"] = problem.classes
    scaling = objective.scaling
    if scaling is not None:
        arrays.update(feature_mean=scaling.mean, feature_std=scaling.std)
    return LinearModel.from_theta(
        record["model"],
        objective.raw(result.x),
        problem.info.n_features,
        problem.loss.n_outputs,
        record,
        arrays,
    )
