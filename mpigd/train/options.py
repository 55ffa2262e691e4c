"""Training options: the one record of them (:class:`TrainOptions`), their checks, what
``optimizer="auto"`` picks, and the arguments each optimiser needs from the objective.
Pure: no MPI, nothing read."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..errors import MpigdError
from ..io.outputs import human_bytes
from ..kernels.losses import CLASSIFIERS, MODELS, PointwiseLoss, make_loss, model_name
from ..objective import Objective
from ..optimize import OPTIMIZERS, L1Penalty, Optimizer
from ..optimize import check_stopping as check_stopping_options
from ..optimize.newton import FULL_HESSIAN_MAX
from ..partition import OPTIMIZER_VECTORS, check_folds, rows_per_block
from ..vectors import vectors_for
from .labels import check_labels

#: ``optimizer="auto"`` solves linear regression with up to this many parameters by the
#: normal equations (an (n+1)^2 Hessian per rank), beyond that by L-BFGS.
NORMAL_MAX_PARAMETERS = 4096


def option(name: str) -> str:
    """How a message names the option ``name`` of the Python API so that it reads right
    on the command line too: ``--l2``, or ``--exclude-fold (exclude_fold)`` where the
    two spellings differ. Collective: no."""
    flag = "--" + name.replace("_", "-")
    return flag if "_" not in name else f"{flag} ({name})"


@dataclass(frozen=True)
class TrainOptions:
    """What a training run is asked for, checked once when the record is made: the same
    :class:`~mpigd.errors.MpigdError` on every rank for a value out of range, before
    anything is read. :func:`mpigd.fit` takes these as keyword arguments, ``mpigd train``
    as options of the same names (``--weight-key`` for ``weight_key``), the estimators
    as parameters; a new option is added here.

    Parameters
    ----------
    model : str
        One of :data:`mpigd.kernels.losses.MODELS`: ``linear``, ``logistic``,
        ``softmax`` (labels 0 .. K-1, with K found from the data), ``poisson``,
        ``gamma``, ``tweedie`` (log link), ``huber`` or ``svm`` (squared hinge).
    power : float, optional
        Tweedie's power, 1 < p < 2 (default 1.5); tweedie only.
    epsilon : float, optional
        Huber's threshold on the residual (default 1.35); huber only.
    optimizer : str
        A key of :data:`mpigd.optimize.OPTIMIZERS`, or ``"auto"`` (:func:`choose_optimizer`).
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
        and the model is mapped back to raw features (:mod:`mpigd.scaling`).
    weight_key : str, optional
        A dataset of row weights ``s_i >= 0``; the loss becomes ``sum s_i l_i / sum s_i``.
    class_weight : {"balanced"}, optional
        Weight classes by ``m / (K count_k)`` (times ``weight_key`` weights).
    labels : {"index", "auto"}
        ``index``: classifier labels are class indices (0/1, or 0 .. K-1). ``auto``: any
        label values (LIBSVM's -1/+1, say), mapped to 0 .. K-1 in sorted order; the
        model keeps them (``arrays["classes"]``) and predicts them.
    batch_size, seed
        Mini-batch size and sampling seed for ``sgd``; ``seed`` also hashes the folds.
    x_key, y_key : str
        The datasets of X and y in the file.
    checkpoint_every : int
        Iterations between checkpoints (with ``checkpoint``).
    folds, fold_key, exclude_fold : optional
        Train on the rows outside fold ``exclude_fold``, with folds as ``mpigd.cv``
        assigns them: ``folds`` hashed with ``seed``, or read from dataset ``fold_key``
        (:mod:`mpigd.io.folds`), so one cell of a cross-validation can be reproduced on
        its own.
    memory : float, optional
        Bytes a rank may use (``--memory 2GiB``); where its rows do not fit, every rank
        streams them from disk on every pass (:mod:`mpigd.io.stream`). Default: a share
        of the node's available memory (:func:`mpigd.parallel.memory_per_rank`).
    """

    model: str = "logistic"
    power: float | None = None
    epsilon: float | None = None
    optimizer: str = "auto"
    l2: float = 0.0
    l1: float = 0.0
    lr: float | None = None
    max_iter: int | None = None
    tol: float = 1e-6
    ftol: float = 1e-12
    standardize: bool = False
    weight_key: str | None = None
    class_weight: str | None = None
    labels: str = "index"
    batch_size: int = 1024
    seed: int = 0
    x_key: str = "X"
    y_key: str = "y"
    checkpoint_every: int = 50
    folds: int | None = None
    fold_key: str | None = None
    exclude_fold: int | None = None
    memory: float | None = None

    def __post_init__(self):
        check_options(
            self.model,
            self.optimizer,
            self.l2,
            self.l1,
            self.class_weight,
            self.batch_size,
            self.checkpoint_every,
            max_iter=1 if self.max_iter is None else self.max_iter,
            tol=self.tol,
            ftol=self.ftol,
            lr=self.lr,
        )
        check_loss_parameters(self.model, self.power, self.epsilon)
        check_labels(self.labels, self.model)
        check_fold_options(self.folds, self.fold_key, self.exclude_fold)
        if self.memory is not None and not (0 < self.memory < np.inf):
            raise MpigdError(f"memory must be a number of bytes > 0, not {self.memory!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The options' names, as keyword arguments and (with dashes) command-line flags."""
        return tuple(field.name for field in fields(cls))

    def loss(self, n_classes: int = 2) -> PointwiseLoss:
        """The pointwise loss of the model (softmax needs the class count), with its
        parameter where one is given (else the loss's default)."""
        given = {"power": self.power, "epsilon": self.epsilon}
        return make_loss(self.model, n_classes, **{k: v for k, v in given.items() if v is not None})

    @property
    def stopping(self) -> dict:
        """The stopping rules as the optimisers take them (no ``max_iter``: their own)."""
        rules = {"tol": self.tol, "ftol": self.ftol}
        return rules if self.max_iter is None else {**rules, "max_iter": self.max_iter}

    def settings(self, optimizer: str, n_outputs: int) -> dict:
        """What decides the objective and its minimiser, as the model file records it and
        a checkpoint must match (options that do not apply are left out)."""
        settings = {
            "model": self.model,
            "l2": self.l2,
            "l1": self.l1,
            "standardize": bool(self.standardize),
            "weight_key": self.weight_key or "",
            "class_weight": self.class_weight or "",
            "n_outputs": n_outputs,
        }
        if self.model in LOSS_PARAMETERS:
            settings[LOSS_PARAMETERS[self.model]] = self.loss().parameter
        if optimizer == "sgd":
            settings.update(batch_size=self.batch_size, seed=self.seed)
        if self.labels == "auto":
            settings.update(labels=self.labels)
        if self.exclude_fold is not None:
            settings.update(
                folds=self.folds,
                fold_key=self.fold_key or "",
                exclude_fold=self.exclude_fold,
                seed=self.seed,
            )
        return settings


#: The option that sets each loss parameter.
LOSS_PARAMETERS = {"tweedie": "power", "huber": "epsilon"}


def check_loss_parameters(model: str, power, epsilon) -> None:
    """Raise for a loss parameter out of range, or given to a model without it.
    Collective: no."""
    for name, value in (("power", power), ("epsilon", epsilon)):
        owner = next(m for m, p in LOSS_PARAMETERS.items() if p == name)
        if value is not None and model != owner:
            raise MpigdError(f"{option(name)} is the {owner} model's; --model {model} has none")
    if power is not None and not 1.0 < power < 2.0:
        raise MpigdError(
            f"{option('power')} must lie strictly between 1 and 2 (compound Poisson-Gamma), "
            f"got {power}; for 1 use poisson, for 2 gamma"
        )
    if epsilon is not None and not (epsilon > 0 and np.isfinite(epsilon)):
        raise MpigdError(f"{option('epsilon')} must be a finite number > 0, got {epsilon}")


def check_fold_options(folds, fold_key, exclude_fold) -> None:
    """Raise for fold options that choose no fold, or one out of range. Collective: no."""
    if exclude_fold is None:
        named = (("folds", folds), ("fold_key", fold_key))
        given = [option(name) for name, value in named if value is not None]
        if given:
            raise MpigdError(
                f"{' and '.join(given)} only {'choose' if len(given) > 1 else 'chooses'} the "
                f"fold that {option('exclude_fold')} leaves out: give --exclude-fold too"
            )
        return
    if folds is None:
        raise MpigdError(
            f"{option('exclude_fold')} needs the fold count, {option('folds')}"
            + (f", also with {option('fold_key')}" if fold_key is not None else "")
        )
    check_folds(folds)
    if not 0 <= exclude_fold < folds:
        raise MpigdError(
            f"{option('exclude_fold')} must lie in 0 .. {folds - 1} (with --folds {folds}), "
            f"got {exclude_fold}"
        )


#: Features up to which ``auto`` trains dense rows streamed from disk by Newton's method
#: with the whole Hessian: its passes are half as many as L-BFGS's or fewer (1M x 64
#: logistic: 6 against 12, flights: 7 against 17), and up to this width a pass that also
#: sums the Hessian (n^2 a row) costs about what reading the rows from a disk does (at
#: n = 64 it took 0.43 s a rank for 500,000 rows, where reading their 256 MB at 0.75 GB/s
#: a rank takes 0.34 s; the Hessian's share grows as n).
STREAMED_NEWTON_MAX_FEATURES = 48


def choose_optimizer(
    model: str, l1: float, n_features: int, *, sparse: bool, streamed: bool = False
) -> str:
    """What ``optimizer="auto"`` means: FISTA for L1; the normal equations for linear
    regression of moderate width; Newton-CG, preconditioned by the Hessian's diagonal, for
    a single output on sparse rows wider than Newton's full Hessian, and for the linear
    SVM on any rows; Newton with the whole Hessian for a single output on dense rows of
    at most :data:`STREAMED_NEWTON_MAX_FEATURES` features streamed from disk, where each
    evaluation is a pass over the disk and Newton makes fewer; L-BFGS otherwise.

    Decided by measurement (docs/optimizers.md, ``benchmarks/run_auto.sh``): to 1e-6 of
    the optimum at P = 2, on 400,000 x 262,144 CSR rows with Zipf-like or flat column
    popularity and on a hashed click log, Newton-CG was as fast as L-BFGS (flat, l2 =
    1e-3) to 30x faster (L-BFGS did not reach the click log's optimum in 1,000
    iterations at l2 = 1e-5); on dense rows, 64 or 2,048 wide, and on the real flights
    data, L-BFGS was 3.4x to 7x faster. The squared hinge's curvature jumps where a row
    crosses its margin, which stalls L-BFGS short of the minimum (scikit-learn's sample
    weight check found its coefficients 2e-4 off, at any tol), while Newton-CG on the generalised
    Hessian, liblinear's method for this loss, reaches it. Huber's generalised curvature
    is 0 wherever every residual lies beyond epsilon (at the start, often): Newton has no
    step there, so Huber trains with L-BFGS. Collective: no.
    """
    if l1 > 0:
        return "nesterov"
    if model == "linear" and n_features + 1 <= NORMAL_MAX_PARAMETERS:
        return "normal"
    wide_sparse = sparse and n_features + 1 > FULL_HESSIAN_MAX
    narrow_streamed = streamed and not sparse and n_features <= STREAMED_NEWTON_MAX_FEATURES
    if model == "svm" or (model not in ("softmax", "huber") and (wide_sparse or narrow_streamed)):
        return "newton"
    return "lbfgs"


def optimizer_arguments(
    spec: Optimizer, objective: Objective, n_rows: int, options: TrainOptions
) -> dict:
    """The keyword arguments beyond ``fun`` and the stopping options that optimiser
    ``spec`` needs (``spec.needs``), taken from ``objective`` and the options.
    Collective: no (the functions it hands over are)."""
    mask = np.zeros(objective.size, dtype=bool)
    mask[: objective.n_features * objective.n_outputs] = True  # W, not the intercepts
    available = {
        "lr": options.lr,
        "penalty": L1Penalty(options.l1, mask) if options.l1 > 0 else None,
        "hess_fun": objective.hessian,
        "hessp": objective.hessp,
        "hess_diag": objective.hess_diagonal,
        "batch_fun": objective.batch,
        "n_rows": n_rows,
        "batch_size": options.batch_size,
        "seed": options.seed,
        "vectors": vectors_for(objective.comm, objective.size),
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
    if class_weight and model not in CLASSIFIERS:
        raise MpigdError(f"class weights need a classifier ({', '.join(CLASSIFIERS)})")
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
        else f"{model_name(model)} on {n_features:,} features"
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
