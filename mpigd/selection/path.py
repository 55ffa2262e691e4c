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
from ..io.dataset import LocalData, fingerprint, first_row
from ..io.folds import fold_ids
from ..io.rows import read_rows
from ..kernels.losses import make_loss
from ..model import LinearModel
from ..optimize import OPTIMIZERS, L1Penalty
from ..optimize.lockstep import run_lockstep
from ..parallel import (
    default_comm,
    max_over_ranks,
    memory_per_rank,
    on_root,
    rank_local,
    warn0,
    wtime,
)
from ..partition import check_folds
from ..train import labels as label_rules
from ..train.driver import ConvergenceWarning, fit
from ..train.options import check_options, option, parameters_problem
from ..train.preemption import SignalWatch
from .folds import per_fold
from .objective import FoldObjectives
from .progress import ROWS, FoldProgress, PathProgress, checkpointed, resumed

#: Validation metrics, and whether larger is better.
METRICS = {
    "log_loss": False,
    "accuracy": True,
    "roc_auc": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}
MODEL_METRICS = {
    "linear": ("rmse", "r2", "mae"),
    "logistic": ("log_loss", "accuracy", "roc_auc"),
    "softmax": ("log_loss", "accuracy"),
}
RULES = ("min", "1se")
#: The most penalties a path may hold (each costs a pass or more per fold model).
MAX_PATH = 10_000


@dataclass(frozen=True)
class CVResult:
    """The cross-validation record (what ``mpigd cv --json`` writes) and the model
    trained on all rows at the chosen penalty (None with ``refit=False``)."""

    record: dict
    model: LinearModel | None


def penalty_path(spec: str | Sequence[float], name: str = "l2_path") -> np.ndarray:
    """The penalties of a path, largest first: ``"HIGH:LOW:COUNT"`` (COUNT log-spaced
    values from HIGH down to LOW) or the values themselves; ``name`` is the option that
    gave it, for the messages. Collective: no."""
    where = f"{option(name)}: "
    if isinstance(spec, str):
        parts = spec.split(":")
        try:
            high, low, count = float(parts[0]), float(parts[1]), int(parts[2])
            if len(parts) != 3:
                raise ValueError
        except (ValueError, IndexError):
            raise MpigdError(f"{where}a penalty path is HIGH:LOW:COUNT, got {spec!r}") from None
        if count < 1:
            raise MpigdError(f"{where}the penalty path {spec!r} is empty: COUNT must be >= 1")
        if count > MAX_PATH:
            raise MpigdError(
                f"{where}the penalty path {spec!r} is too long: COUNT must be <= {MAX_PATH}"
            )
        if min(high, low) < 0:
            raise MpigdError(
                f"{where}the penalty path {spec!r} holds a negative penalty: a penalty "
                "cannot be negative, and a log-spaced path needs HIGH >= LOW > 0"
            )
        if min(high, low) == 0:
            raise MpigdError(
                f"{where}the penalty path {spec!r} reaches 0: a log-spaced path needs "
                "HIGH >= LOW > 0"
            )
        if not (np.isfinite(high) and high >= low):
            raise MpigdError(f"{where}the penalty path {spec!r} needs HIGH >= LOW > 0, finite")
        return np.geomspace(high, low, count) if count > 1 else np.array([high])
    values = np.asarray(spec, dtype=np.float64).ravel()
    if len(values) == 0:
        raise MpigdError(f"{where}the penalty path is empty")
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise MpigdError(f"{where}penalties must be finite numbers >= 0")
    return np.unique(values)[::-1].copy()


def choose(val: np.ndarray, larger_is_better: bool) -> tuple[int, int]:
    """Indices of the best penalty by mean validation metric, and of the largest penalty
    whose mean lies within one standard error (std over folds / sqrt(F), as glmnet) of
    the best; the path runs from the largest penalty. Collective: no."""
    sign = -1.0 if larger_is_better else 1.0
    mean = sign * val.mean(axis=1)
    if np.isnan(mean).all():
        raise MpigdError("the validation metric is undefined (NaN) at every penalty")
    best = int(np.nanargmin(mean))
    se = val[best].std(ddof=1) / np.sqrt(val.shape[1])
    within = np.flatnonzero(mean <= mean[best] + se)
    return best, int(within[0]) if len(within) else best


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
    l2: float = 0.0,
    metric: str | None = None,
    rule: str = "min",
    standardize: bool = False,
    weight_key: str | None = None,
    class_weight: str | None = None,
    max_iter: int | None = None,
    tol: float = 1e-6,
    ftol: float = 1e-12,
    x_key: str = "X",
    y_key: str = "y",
    refit: bool = True,
    labels: str = "index",
    callback: Callable[[dict], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: str | os.PathLike | None = None,
) -> CVResult:
    """Cross-validate a linear, logistic or softmax regression along a penalty path.

    Rows belong to fold ``hash(seed, row index) mod folds`` or to the integer fold id
    in dataset ``fold_key``; model j trains on the rows outside fold j. ``l2_path``
    (L-BFGS) or ``l1_path`` (FISTA, with ``l2`` fixed) gives the penalties:
    ``"HIGH:LOW:COUNT"`` or a sequence. ``metric`` (default: log-loss for classifiers,
    RMSE for linear) is computed on each held-out fold, unweighted, as ``evaluate``
    does; ``rule`` ``"min"`` picks the best mean, ``"1se"`` the largest penalty within
    one standard error of it. Other options as in :func:`mpigd.fit`; ``callback``
    gets each penalty's row of the table.

    With ``checkpoint``, every fold model's progress is written there after each
    penalty, every ``checkpoint_every`` evaluations, and on SIGTERM or SIGUSR1, which
    then raise :class:`~mpigd.errors.Preempted`; ``resume`` continues from such a
    file (the same data and settings), each fold model exactly where it stopped.

    Collective: yes. Returns the same :class:`CVResult` on every rank.
    """
    comm = default_comm(comm)
    start = wtime()
    kind = "l1" if l1_path is not None else "l2"
    if (l1_path is None) == (l2_path is None):
        raise MpigdError(
            f"give one penalty path: {option('l2_path')}, or {option('l1_path')} with --l2 fixed"
        )
    check_folds(folds)  # before anything is read or estimated
    path = penalty_path(*((l1_path, "l1_path") if kind == "l1" else (l2_path, "l2_path")))
    optimizer = "nesterov" if kind == "l1" else "lbfgs"
    check_options(
        model, optimizer, l2, 0.0, class_weight, 1, checkpoint_every,
        max_iter=1 if max_iter is None else max_iter, tol=tol, ftol=ftol, lr=None,
    )  # fmt: skip
    metric = metric or MODEL_METRICS[model][0]
    if metric not in MODEL_METRICS[model]:
        raise MpigdError(
            f"--metric {metric!r} is not for {model} models; choose from "
            f"{', '.join(MODEL_METRICS[model])}"
        )
    if rule not in RULES:
        raise MpigdError(f"--rule {rule!r}: choose one of {', '.join(RULES)}")
    label_rules.check_labels(labels, model)
    local, objective, classes = _load(
        comm, data, model, folds, fold_key, seed, x_key, y_key, weight_key, class_weight,
        standardize, labels,
    )  # fmt: skip
    stopping = {"tol": tol, "ftol": ftol} | ({} if max_iter is None else {"max_iter": max_iter})
    mask = np.zeros(objective.size, dtype=bool)
    mask[: objective.n_features * objective.n_outputs] = True
    run_info = None  # what a checkpoint must match
    if checkpoint is not None or resume is not None:
        settings = {
            "model": model, "penalty": kind, "path": ",".join(map(repr, path.tolist())),
            "l2": l2, "folds": folds, "fold_key": fold_key or "", "seed": seed,
            "metric": metric, "standardize": bool(standardize), "weight_key": weight_key or "",
            "class_weight": class_weight or "", "labels": labels, "tol": tol, "ftol": ftol,
            "max_iter": -1 if max_iter is None else max_iter,
        }  # fmt: skip
        run_info = on_root(comm, lambda: {**settings, **fingerprint(local.info)})
    if resume is None:
        progress = PathProgress(0, [FoldProgress(np.zeros(objective.size)) for _ in range(folds)])
    else:
        progress = resumed(comm, resume, optimizer, run_info, folds, objective.size, len(path))
        objective.n_evals, objective.score_passes = progress.n_evals, progress.score_passes
        for i in range(progress.step):  # the table's rows of the penalties done before
            if callback is not None:
                callback(_row(kind, path[i], *(progress.rows[key][i] for key in ROWS[:2])))

    def save() -> str:
        progress.n_evals, progress.score_passes = objective.n_evals, objective.score_passes
        on_root(comm, lambda: progress.checkpoint(optimizer, run_info, comm.size).save(checkpoint))
        return str(checkpoint)

    def where() -> str:
        return f"penalty {progress.step + 1} of {len(path)}"

    with SignalWatch() if checkpoint is not None else nullcontext(None) as watch:
        if watch is not None:  # a signal asks for a checkpoint, not the end
            objective.stop_flag = watch
        batch = objective
        if checkpoint is not None:
            batch = checkpointed(objective, save, checkpoint_every, where, watch)
        for i in range(progress.step, len(path)):
            value = float(path[i])
            extras = {}
            if kind == "l1":
                objective.l2 = l2
                extras = {"penalty": L1Penalty(value, mask), "lr": None}
            else:
                objective.l2 = value
            run_one = partial(OPTIMIZERS[optimizer].run, **stopping, **extras)
            results = run_lockstep([fold.task(run_one) for fold in progress.folds], batch)
            for j, result in enumerate(results):
                if result.diverged:
                    raise Diverged(f"fold {j} at {kind} = {value:g}: {result.message}")
            thetas = [result.x for result in results]
            row = {
                "val": objective.validation(thetas, model, metric),
                "iterations": [result.nit for result in results],
                "evaluations": [fold.passes for fold in progress.folds],
                "converged": [result.converged for result in results],
            }
            for key, entries in progress.rows.items():
                entries.append(row[key])
            # each model's warm start at the next penalty (the same one after the last)
            change = float(path[i + 1]) - value if kind == "l2" and i + 1 < len(path) else 0.0
            progress.folds = [
                fold.next(change, mask, ridge=kind == "l2") for fold in progress.folds
            ]
            progress.step = i + 1
            if checkpoint is not None:
                save()
            if callback is not None:
                callback(_row(kind, value, row["val"], row["iterations"]))
        # a signal after the last evaluation, on any rank: agreed, as the objective agrees
        if watch is not None and max_over_ranks(comm, [float(watch())])[0] > 0:
            raise Preempted(
                f"{watch.received or 'a signal on another rank'} after the last penalty; "
                f"checkpoint written to {save()}; resume from it to train the final model"
            )
    val, iterations, evaluations, converged = (progress.rows[key] for key in ROWS)
    thetas = [fold.theta for fold in progress.folds]
    val = np.array(val, dtype=np.float64)
    if not np.all(converged):
        warn0(
            comm,
            f"{np.size(converged) - np.count_nonzero(converged)} of the {np.size(converged)} "
            "fold models stopped before their stopping tests (max_iter, or a line search "
            "that found no decrease: see iterations and converged in the record)",
            ConvergenceWarning,
        )
    best, best_1se = choose(val, METRICS[metric])
    chosen = best if rule == "min" else best_1se
    record = {
        "model": model,
        "data": os.path.abspath(data),
        "folds": folds,
        "fold_key": fold_key or "",
        "seed": seed,
        "penalty": kind,
        kind: path.tolist(),
        **({"l2": l2} if kind == "l1" else {}),
        "metric": metric,
        "rule": rule,
        "val": val.tolist(),
        "val_mean": val.mean(axis=1).tolist(),
        "val_std": val.std(axis=1, ddof=1).tolist(),
        f"best_{kind}": float(path[best]),
        f"best_{kind}_1se": float(path[best_1se]),
        "chosen": float(path[chosen]),
        "iterations": iterations,
        "converged": converged,
        "fold_evaluations": evaluations,
        "passes": objective.n_evals + objective.score_passes,
        "evaluations": objective.n_evals,
    }
    if classes is not None:
        record["classes"] = classes.tolist()
    fitted = None
    if refit:
        penalties = {"l1": float(path[chosen]), "l2": l2} if kind == "l1" else {"l2": path[chosen]}
        raw = np.mean([objective.raw(j, theta) for j, theta in enumerate(thetas)], axis=0)
        n, K = objective.n_features, objective.n_outputs
        fitted = fit(
            local, model, comm=comm, optimizer=optimizer, **penalties, max_iter=max_iter,
            tol=tol, ftol=ftol, standardize=standardize, weight_key=weight_key,
            class_weight=class_weight, x_key=x_key, y_key=y_key,
            init=LinearModel.from_theta(model, raw, n, K),
        ).model  # fmt: skip
        fitted.info.update(
            {f"cv_{key}": _attr(record[key]) for key in _MODEL_KEYS if key in record}
        )
        if classes is not None:  # the label values, as train --labels auto keeps them
            fitted.arrays["classes"] = classes
            fitted.info["labels"] = "auto"
    record["seconds"] = float(max_over_ranks(comm, [wtime() - start])[0])
    return CVResult(record, fitted)


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


def _load(
    comm, data, model, folds, fold_key, seed, x_key, y_key, weight_key, class_weight,
    standardize, label_kind,
) -> tuple[LocalData, FoldObjectives, np.ndarray | None]:  # fmt: skip
    """Read this rank's rows (their label values mapped to classes with
    ``label_kind="auto"``), assign folds and derive each fold model's weights and
    scaling: the rows, the :class:`FoldObjectives` of the problem and the label values
    (None for class indices). Collective: yes."""
    auto = label_kind == "auto"
    info, local = read_rows(comm, data, x_key, y_key, weight_key, None if auto else model)
    classes = None
    if auto:
        local, classes = label_rules.encode(comm, local, model)
    n_classes = label_rules.n_classes(comm, local) if model == "softmax" else 2
    n_outputs = n_classes if model == "softmax" else 1
    check_folds(folds, info.n_rows)  # a count that cannot be is no memory problem
    budget = memory_per_rank(comm)
    with rank_local(comm):  # every fold model holds its optimiser's vectors
        problem = parameters_problem(
            model, info.n_features, n_outputs, len(local.y), budget / folds
        )
        if problem:  # each fold model holds its own optimiser's vectors: a share each
            raise MpigdError(f"{folds} fold models, each: {problem}")
    fold = fold_ids(comm, local, folds, seed=seed, key=fold_key)
    if model != "linear":
        label_rules.warn_about_empty_classes(comm, local, n_classes)
    shift = on_root(comm, lambda: first_row(info), share=True) if standardize else None
    setup = per_fold(
        comm, local, fold, folds, 0 if model == "linear" else n_classes,
        class_weight=class_weight, shift=shift,
    )  # fmt: skip
    objective = FoldObjectives(
        comm,
        local.X,
        local.y,
        make_loss(model, n_classes),
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
        _warn_about_folds_without_a_class(comm, setup.training_classes, classes)
    return local, objective, classes
