"""K-fold cross-validation along a regularisation path, all folds in one pass.

:func:`cv` trains the F fold models together (:class:`FoldObjectives`: one sweep over
this rank's rows and one ``Allreduce`` serve every model that still runs; each model
keeps its own optimiser, :func:`mpigd.optimize.lockstep.run_lockstep`), from the largest
penalty to the smallest, each model starting from its solution at the previous penalty
(as glmnet's ``cv.glmnet`` does). After each penalty, one more sweep scores each model
on its held-out fold. The penalty is chosen by the best mean validation metric, or the
one-standard-error rule, and a final model is trained on all rows at that penalty.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..errors import Diverged, Interrupted, MpigdError, Preempted, plural
from ..io.dataset import data_path, fingerprint
from ..io.folds import fold_ids
from ..kernels.losses import CLASSIFIERS
from ..model import LinearModel
from ..optimize import OPTIMIZERS, L1Penalty
from ..optimize.lockstep import run_lockstep
from ..parallel import default_comm, max_over_ranks, on_root, warn0, wtime
from ..partition import check_folds
from ..threads import limited
from ..train import labels as label_rules
from ..train.driver import ConvergenceWarning, fit
from ..train.options import TrainOptions, option
from ..train.preemption import SignalWatch
from ..train.problem import load_problem
from .folds import per_fold
from .objective import FoldObjectives
from .penalties import (
    METRICS,
    MODEL_METRICS,
    RULES,
    choose,
    penalty_path,
    warn_at_an_end,
)
from .progress import ROWS, FoldProgress, PathProgress, checkpointed, resumed


@dataclass(frozen=True)
class CVResult:
    """The cross-validation record (what ``mpigd cv --json`` writes) and the model
    trained on all rows at the chosen penalty (None with ``refit=False``)."""

    record: dict
    model: LinearModel | None


#: The options of :func:`mpigd.fit` that :func:`cv` takes; it chooses the optimiser
#: itself, and the penalty of the path is its own.
CV_OPTIONS = (
    "l2", "standardize", "weight_key", "class_weight", "labels", "max_iter", "tol", "ftol",
    "x_key", "y_key", "checkpoint_every", "memory", "power", "epsilon",
)  # fmt: skip


@dataclass(frozen=True)
class _Plan:
    """A cross-validation's own settings, checked: the path and how a penalty is chosen."""

    kind: str  # "l2" or "l1": which penalty the path holds
    path: np.ndarray  # the penalties, largest first
    folds: int
    fold_key: str | None
    metric: str
    rule: str

    @property
    def optimizer(self) -> str:
        return "nesterov" if self.kind == "l1" else "lbfgs"


@limited
def cv(
    data: str | os.PathLike,
    model: str = "logistic",
    *,
    comm=None,
    folds: int = 5,
    fold_key: str | None = None,
    seed: int = 0,
    l2_path: str | Sequence[float] | None = None,
    l1_path: str | Sequence[float] | None = None,
    metric: str | None = None,
    rule: str = "min",
    refit: bool = True,
    callback: Callable[[dict], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    **options,
) -> CVResult:
    """Cross-validate a linear model of any kind along a penalty path.

    Rows belong to fold ``hash(seed, row index) mod folds`` or to the integer fold id
    in dataset ``fold_key``; model j trains on the rows outside fold j. ``l2_path``
    (L-BFGS) or ``l1_path`` (FISTA, with ``l2`` fixed) gives the penalties:
    ``"HIGH:LOW:COUNT"`` or a sequence. ``metric`` (default: the model's first in
    :data:`~mpigd.selection.penalties.MODEL_METRICS`) is computed on each held-out
    fold, unweighted, as ``evaluate`` does; ``rule`` ``"min"`` picks the best mean,
    ``"1se"`` the largest penalty within one standard error of it. ``options`` are
    those of :func:`mpigd.fit` named in :data:`CV_OPTIONS`; ``callback`` gets each
    penalty's row of the table.

    With ``checkpoint``, every fold model's progress is written there after each
    penalty, every ``checkpoint_every`` evaluations, and on SIGTERM or SIGUSR1, which
    then raise :class:`~mpigd.errors.Preempted`; ``resume`` continues from such a
    file (the same data and settings), each fold model exactly where it stopped.

    Collective: yes. Returns the same :class:`CVResult` on every rank.
    """
    comm = default_comm(comm)
    start = wtime()
    plan, options = _checked(model, folds, fold_key, seed, l2_path, l1_path, metric, rule, options)
    local, objective, classes = _load(comm, data, options, plan)
    run_info = None  # what a checkpoint must match
    if checkpoint is not None or resume is not None:
        settings = _settings(options, plan)
        run_info = on_root(comm, lambda: {**settings, **fingerprint(local.info)})
    progress = _progress(comm, objective, plan, run_info, resume, callback)
    _walk(comm, objective, options, plan, progress, run_info, checkpoint, callback)
    record = _record(local.info, options, plan, progress, objective, classes)
    fitted = (
        _refit(comm, local, options, plan, record, progress, objective, classes) if refit else None
    )
    record["seconds"] = float(max_over_ranks(comm, [wtime() - start])[0])
    return CVResult(record, fitted)


def _checked(model, folds, fold_key, seed, l2_path, l1_path, metric, rule, options):
    """The cross-validation's settings and its training options, checked before anything
    is read. Collective: no."""
    kind = "l1" if l1_path is not None else "l2"
    if (l1_path is None) == (l2_path is None):
        raise MpigdError(
            f"give one penalty path: {option('l2_path')}, or {option('l1_path')} with --l2 fixed"
        )
    check_folds(folds)  # before anything is read or estimated
    path = penalty_path(*((l1_path, "l1_path") if kind == "l1" else (l2_path, "l2_path")))
    unknown = sorted(set(options) - set(CV_OPTIONS))
    if unknown:
        raise TypeError(f"cv() got an unexpected keyword argument {unknown[0]!r}")
    optimizer = "nesterov" if kind == "l1" else "lbfgs"
    options = TrainOptions(model=model, optimizer=optimizer, seed=seed, **options)
    metric = metric or MODEL_METRICS[model][0]
    if metric not in MODEL_METRICS[model]:
        raise MpigdError(
            f"--metric {metric!r} is not for {model} models; choose from "
            f"{', '.join(MODEL_METRICS[model])}"
        )
    if rule not in RULES:
        raise MpigdError(f"--rule {rule!r}: choose one of {', '.join(RULES)}")
    return _Plan(kind, path, folds, fold_key, metric, rule), options


def _settings(options: TrainOptions, plan: _Plan) -> dict:
    """What a checkpoint of this cross-validation must match (with the data's
    fingerprint)."""
    return {
        "model": options.model, "penalty": plan.kind,
        "path": ",".join(map(repr, plan.path.tolist())), "l2": options.l2,
        "folds": plan.folds, "fold_key": plan.fold_key or "", "seed": options.seed,
        "metric": plan.metric, "standardize": bool(options.standardize),
        "weight_key": options.weight_key or "", "class_weight": options.class_weight or "",
        "labels": options.labels, "tol": options.tol, "ftol": options.ftol,
        "max_iter": -1 if options.max_iter is None else options.max_iter,
        "loss_parameter": options.loss().parameter,
    }  # fmt: skip


def _progress(comm, objective, plan: _Plan, run_info, resume, callback) -> PathProgress:
    """Where the path starts: every fold model at zero before the first penalty, or
    where a checkpoint left them (the table's rows of the penalties done go to
    ``callback`` again). Collective: yes."""
    if resume is None:
        return PathProgress(0, [FoldProgress(np.zeros(objective.size)) for _ in range(plan.folds)])
    progress = resumed(
        comm, resume, plan.optimizer, run_info, plan.folds, objective.size, len(plan.path)
    )
    objective.restore(progress.n_evals, progress.score_passes)
    for i in range(progress.step):  # the table's rows of the penalties done before
        if callback is not None:
            callback(_row(plan.kind, plan.path[i], *(progress.rows[key][i] for key in ROWS[:2])))
    return progress


def _walk(comm, objective, options, plan: _Plan, progress, run_info, checkpoint, callback):
    """Train every fold model at each penalty left, largest first, in lockstep (one
    sweep and one ``Allreduce`` an evaluation for all), and score them on their folds;
    with ``checkpoint``, save the progress after each penalty and on a signal.
    Collective: yes."""
    mask = np.zeros(objective.size, dtype=bool)
    mask[: objective.n_features * objective.n_outputs] = True

    def save() -> str:
        progress.n_evals, progress.score_passes = objective.n_evals, objective.score_passes
        on_root(
            comm,
            lambda: progress.checkpoint(plan.optimizer, run_info, comm.size).save(checkpoint),
        )
        return str(checkpoint)

    def where() -> str:
        return f"penalty {progress.step + 1} of {len(plan.path)}"

    with SignalWatch() if checkpoint is not None else nullcontext(None) as watch:
        batch = objective
        if watch is not None:  # a signal asks for a checkpoint, not the end
            objective.watch(watch)
            batch = checkpointed(objective, save, options.checkpoint_every, where, watch)
        for i in range(progress.step, len(plan.path)):
            row = _step(objective, batch, options, plan, progress, i, mask)
            if checkpoint is not None:
                save()
            if callback is not None:
                callback(_row(plan.kind, plan.path[i], row["val"], row["iterations"]))
        # a signal after the last evaluation, on any rank: agreed, as the objective agrees
        if watch is not None and max_over_ranks(comm, [float(watch())])[0] > 0:
            raise Preempted(
                f"{watch.received or 'a signal on another rank'} after the last penalty; "
                f"checkpoint written to {save()}; resume from it to train the final model"
            )


def _step(objective, batch, options, plan: _Plan, progress, i: int, mask) -> dict:
    """Penalty ``i`` of the path: every fold model trained from its warm start (the
    evaluations through ``batch``), scored on its fold, and moved to its warm start at
    the next penalty; the table's row, also appended to ``progress``. Collective: yes."""
    value = float(plan.path[i])
    extras = {}
    if plan.kind == "l1":
        objective.penalize(options.l2)
        extras = {"penalty": L1Penalty(value, mask), "lr": None}
    else:
        objective.penalize(value)
    run_one = partial(OPTIMIZERS[plan.optimizer].run, **options.stopping, **extras)
    results = run_lockstep([fold.task(run_one) for fold in progress.folds], batch)
    for j, result in enumerate(results):
        if result.diverged:
            raise Diverged(f"fold {j} at {plan.kind} = {value:g}: {result.message}")
    thetas = [result.x for result in results]
    row = {
        "val": objective.validation(thetas, options.model, plan.metric),
        "iterations": [result.nit for result in results],
        "evaluations": [fold.passes for fold in progress.folds],
        "converged": [result.converged for result in results],
    }
    for key, entries in progress.rows.items():
        entries.append(row[key])
    # each model's warm start at the next penalty (the same one after the last)
    last = i + 1 == len(plan.path)
    change = float(plan.path[i + 1]) - value if plan.kind == "l2" and not last else 0.0
    progress.folds = [fold.next(change, mask, ridge=plan.kind == "l2") for fold in progress.folds]
    progress.step = i + 1
    return row


def _record(info, options: TrainOptions, plan: _Plan, progress, objective, classes) -> dict:
    """The cross-validation's record (what ``mpigd cv --json`` writes): the table, the
    penalties chosen by each rule, the passes. Warns where fold models stopped early, and
    where the chosen penalty is an end of the path. Collective: no."""
    comm, kind, path = objective.comm, plan.kind, plan.path
    val, iterations, evaluations, converged = (progress.rows[key] for key in ROWS)
    val = np.array(val, dtype=np.float64)
    if not np.all(converged):
        warn0(
            comm,
            f"{np.size(converged) - np.count_nonzero(converged)} of the {np.size(converged)} "
            "fold models stopped before their stopping tests (max_iter, or a line search "
            "that found no decrease: see iterations and converged in the record)",
            ConvergenceWarning,
        )
    best, best_1se = choose(val, METRICS[plan.metric])
    chosen = best if plan.rule == "min" else best_1se
    warn_at_an_end(comm, kind, path, chosen)
    record = {
        "model": options.model, "data": data_path(info), "folds": plan.folds,
        "fold_key": plan.fold_key or "", "seed": options.seed, "penalty": kind,
        kind: path.tolist(), **({"l2": options.l2} if kind == "l1" else {}),
        "metric": plan.metric, "rule": plan.rule, "val": val.tolist(),
        "val_mean": val.mean(axis=1).tolist(), "val_std": val.std(axis=1, ddof=1).tolist(),
        f"best_{kind}": float(path[best]), f"best_{kind}_1se": float(path[best_1se]),
        "chosen": float(path[chosen]), "iterations": iterations, "converged": converged,
        "fold_evaluations": evaluations, "passes": objective.n_evals + objective.score_passes,
        "evaluations": objective.n_evals,
    }  # fmt: skip
    if classes is not None:
        record["classes"] = classes.tolist()
    return record


def _refit(comm, local, options, plan: _Plan, record, progress, objective, classes):
    """The final model: trained on all rows at the chosen penalty, from the mean of the
    fold models (mapped to raw features), with the cross-validation in its record
    (``cv_<key>``). Collective: yes."""
    chosen = record["chosen"]
    penalties = {"l1": chosen, "l2": options.l2} if plan.kind == "l1" else {"l2": chosen}
    thetas = [fold.theta for fold in progress.folds]
    raw = np.mean([objective.raw(j, theta) for j, theta in enumerate(thetas)], axis=0)
    n, K = objective.n_features, objective.n_outputs
    fitted = fit(
        local, options.model, comm=comm, optimizer=plan.optimizer, **penalties,
        max_iter=options.max_iter, tol=options.tol, ftol=options.ftol,
        standardize=options.standardize, weight_key=options.weight_key,
        class_weight=options.class_weight, x_key=options.x_key, y_key=options.y_key,
        power=options.power, epsilon=options.epsilon,
        init=LinearModel.from_theta(options.model, raw, n, K),
    ).model  # fmt: skip
    fitted.info.update({f"cv_{key}": _attr(record[key]) for key in _MODEL_KEYS if key in record})
    if classes is not None:  # the label values, as train --labels auto keeps them
        fitted.arrays["classes"] = classes
        fitted.info["labels"] = "auto"
    return fitted


#: What the final model's attributes record of the cross-validation (as ``cv_<key>``).
_MODEL_KEYS = ("folds", "fold_key", "seed", "penalty", "l2", "l1", "metric", "rule", "chosen")


def _attr(value):
    return np.array(value) if isinstance(value, list) else value


def _row(kind: str, value: float, val: list, iterations: list) -> dict:
    values = np.array(val, dtype=np.float64)
    return {
        kind: float(value),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)),
        "iterations": int(max(iterations)),
    }


def _warn_about_folds_without_a_class(comm, weights: np.ndarray, classes) -> None:
    """Warn (rank 0) when the training rows of a fold model hold no row of a class that
    the data has (all its rows in one fold): that model's scores for it are pushed down
    without bound unless l2 > 0, and its held-out metric says little. Collective: no."""
    lacking = np.argwhere((weights == 0) & (weights.sum(axis=0) > 0))
    if len(lacking):
        j, k = map(int, lacking[0])
        name = f"{classes[k]:g}" if classes is not None else str(k)
        models = len(np.unique(lacking[:, 0]))
        warn0(
            comm,
            f"{plural(models, 'fold model')} of {len(weights)} "
            f"{'trains' if models == 1 else 'train'} on no rows of a class "
            f"(e.g. model {j}: every row of class {name} is in fold {j}); their parameters "
            "grow without bound at small penalties; use fewer folds, or other fold ids",
            label_rules.EmptyClassWarning,
        )


def _load(comm, data, options: TrainOptions, plan: _Plan):
    """Read this rank's rows (:func:`mpigd.train.problem.load_problem`), assign folds and
    derive each fold model's weights and scaling: the rows, the :class:`FoldObjectives`
    of the problem and the label values (None for class indices). Collective: yes."""
    folds = plan.folds
    problem = load_problem(comm, data, options, models=folds)
    local = problem.local
    fold = fold_ids(comm, local, folds, seed=options.seed, key=plan.fold_key)
    classes = problem.n_classes if options.model in CLASSIFIERS else 0
    setup = per_fold(
        comm, local, fold, folds, classes, class_weight=options.class_weight, shift=problem.shift
    )
    objective = FoldObjectives(
        comm,
        local.X,
        local.y,
        problem.loss,
        fold,
        folds,
        weights=local.weights,
        class_weights=setup.class_weights,
        scalings=setup.scalings,
        stop_flag=lambda: Interrupted.pending is not None,  # a signal Python swallowed
    )
    light = np.flatnonzero(~(objective.total_weight > 0))
    if len(light):
        raise MpigdError(
            f"the training rows of fold model {int(light[0])} have total weight "
            f"{objective.total_weight[light[0]]:g}; it must be more than 0"
        )
    if setup.training_classes is not None:  # after the error that its weights would be
        _warn_about_folds_without_a_class(comm, setup.training_classes, problem.classes)
    return local, objective, problem.classes
