"""Training options: their checks, what ``optimizer="auto"`` picks, and the arguments
each optimiser needs from the objective. Pure: no MPI, nothing read."""

from __future__ import annotations

import numpy as np

from ..errors import MpigdError
from ..io.outputs import human_bytes
from ..kernels.losses import MODELS
from ..objective import Objective
from ..optimize import OPTIMIZERS, L1Penalty, Optimizer
from ..optimize import check_stopping as check_stopping_options
from ..partition import rows_per_block

#: Parameter vectors an optimiser may hold at once (L-BFGS: 10 curvature pairs, plus the
#: iterate, gradient, direction and line-search points), for the memory estimate.
OPTIMIZER_VECTORS = 32

#: ``optimizer="auto"`` solves linear regression with up to this many parameters by the
#: normal equations (an (n+1)^2 Hessian per rank), beyond that by L-BFGS.
NORMAL_MAX_PARAMETERS = 4096


def option(name: str) -> str:
    """How a message names the option ``name`` of the Python API so that it reads right
    on the command line too: ``--l2``, or ``--exclude-fold (exclude_fold)`` where the
    two spellings differ. Collective: no."""
    flag = "--" + name.replace("_", "-")
    return flag if "_" not in name else f"{flag} ({name})"


def choose_optimizer(model: str, l1: float, n_features: int) -> str:
    """What ``optimizer="auto"`` means: FISTA for L1, the normal equations for linear
    regression of moderate width, L-BFGS otherwise. Collective: no."""
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
    ``spec`` needs (``spec.needs``), taken from ``objective`` and the options.
    Collective: no (the functions it hands over are)."""
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


def check_options(
    model, optimizer, l2, l1, class_weight, batch_size, checkpoint_every=1, **stopping
) -> None:
    """Raise the same :class:`MpigdError` on every rank for out-of-range options, before
    anything is read. Collective: no."""
    if model not in MODELS:
        raise MpigdError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if optimizer != "auto" and optimizer not in OPTIMIZERS:
        raise MpigdError(
            f"unknown optimizer {optimizer!r}; choose from auto, {', '.join(OPTIMIZERS)}"
        )
    for name, value in (("l2", l2), ("l1", l1)):
        if not (value >= 0 and np.isfinite(value)):
            raise MpigdError(f"{option(name)} must be a finite number >= 0, got {value}")
    if class_weight not in (None, "balanced"):
        raise MpigdError(
            f"{option('class_weight')} must be 'balanced' or None, got {class_weight!r}"
        )
    if class_weight and model == "linear":
        raise MpigdError("class weights need a classifier (logistic or softmax)")
    if batch_size < 1:
        raise MpigdError(f"{option('batch_size')} must be >= 1, got {batch_size}")
    try:
        check_stopping_options(**stopping)
    except ValueError as exc:
        raise MpigdError(str(exc)) from exc
    if not (checkpoint_every >= 1 and checkpoint_every == int(checkpoint_every)):
        raise MpigdError(
            f"{option('checkpoint_every')} must be a whole number >= 1, got {checkpoint_every}"
        )
    if optimizer == "auto":
        return
    spec = OPTIMIZERS[optimizer]
    if l1 > 0 and not spec.l1:
        raise MpigdError(f"optimizer {optimizer!r} cannot handle an L1 penalty; use nesterov")
    if spec.least_squares and model != "linear":
        raise MpigdError(f"optimizer {optimizer!r} solves linear regression only")
    if spec.single_output and model == "softmax":
        raise MpigdError(f"optimizer {optimizer!r} needs a single output; use lbfgs for softmax")


def parameters_problem(
    model: str, n_features: int, n_outputs: int, n_rows: int, budget: float
) -> str | None:
    """Why the parameters of this model, the optimiser's vectors of them and a block's
    work space (``K`` values per row, for a block of at most ``n_rows`` rows, this
    rank's) would not fit in ``budget`` bytes, or None. Checked before the first
    evaluation; for softmax the class count comes from the largest label, so one stray
    label can ask for terabytes. The message does not depend on ``n_rows``, so that the
    ranks that fail say one thing. Collective: no."""
    p = (n_features + 1) * n_outputs
    block = min(rows_per_block(8 * n_features), max(n_rows, 1))
    per_row = 8.0 * 3 * n_outputs
    need = 8.0 * OPTIMIZER_VECTORS * p + block * per_row
    if need <= budget:
        return None
    what = (
        f"softmax with {n_outputs:,} classes (labels 0 .. {n_outputs - 1:,})"
        if model == "softmax"
        else f"{model} regression on {n_features:,} features"
    )
    hint = "; softmax labels must be class indices 0 .. K-1" if model == "softmax" else ""
    return (
        f"{what} needs about {human_bytes(8.0 * OPTIMIZER_VECTORS * p)} per rank for its "
        f"parameters, plus {human_bytes(per_row)} of work space per row, more than the "
        f"{human_bytes(budget)} a rank has{hint}"
    )


def hessian_problem(optimizer: str, n_parameters: int, budget: float) -> str | None:
    """Why the normal equations' dense (p x p) matrix would not fit in ``budget`` bytes
    (it is reduced once and factorised: about three copies), or None. Collective: no."""
    need = 3 * 8.0 * n_parameters * n_parameters
    if optimizer != "normal" or need <= budget:
        return None
    return (
        f"the normal equations need a {n_parameters:,} x {n_parameters:,} matrix, about "
        f"{human_bytes(need)} per rank, more than the {human_bytes(budget)} a rank has; use "
        "lbfgs or newton for this many features"
    )
