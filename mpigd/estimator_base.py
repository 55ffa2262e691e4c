"""What mpigd's scikit-learn estimators (:mod:`mpigd.estimators`) share: the check that
every rank built the same estimator and passed inputs of one kind, the rank's rows as the
driver takes them, the fit through :func:`mpigd.fit`, the rank-local decision values and
the scores summed over the ranks.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import scipy.sparse as sp

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin  # noqa: F401
    from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # the estimators only; training needs no scikit-learn
    raise ImportError(
        f"mpigd's estimators need scikit-learn >= 1.6 ({exc}): pip install 'mpigd[sklearn]'"
    ) from exc

from .errors import InvalidInputError, MpigdError, merge_reports, report_of
from .evaluation.metrics import regression
from .io.dataset import DatasetInfo, LocalData
from .io.memory import checked_sparse
from .parallel import allreduce_sum, default_comm, gather_all, rows_before
from .threads import limited


def _comm(estimator):
    """The estimator's communicator (:func:`~mpigd.parallel.default_comm`), a bad one as
    :class:`InvalidInputError`. Collective: no."""
    try:
        return default_comm(estimator.comm)
    except MpigdError as exc:
        raise InvalidInputError(str(exc)) from exc


def _input_of(X, weights) -> tuple:
    """What the ranks must agree on about this rank's input: an HDF5 path, or arrays of a
    width and dtype, and whether it has sample weights."""
    if isinstance(X, str | os.PathLike):
        return ("a path", os.fspath(X))
    return ("arrays", X.shape[1], str(X.dtype), weights is not None)


def _canonical(value) -> str:
    """A parameter's value as the ranks compare it: numbers by value (``0`` equals
    ``0.0`` and ``np.float64(0.0)``), a dict's items in a fixed order."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(float(value))
    if isinstance(value, dict):
        return repr(sorted((_canonical(k), _canonical(v)) for k, v in value.items()))
    return repr(value)


def _agreed(comm, estimator, work, describe=None):
    """Run rank-local ``work()`` (validation); then, under several ranks, agree in one
    ``allgather`` on the estimator's parameters, on ``describe(work())`` (the input's kind,
    width and dtype) and on whether any rank failed: any rank's exception, or a
    disagreement, becomes one :class:`InvalidInputError` on every rank, before any
    reduction could mismatch. A single process keeps the original exception (as
    scikit-learn's checks expect). Collective: yes (with more than one rank)."""
    if comm.size == 1:
        return work()
    error, result, seen = None, None, None
    try:
        result = work()
        seen = describe(result) if describe else None
    except Exception as exc:  # whatever it is, every rank must hear of it
        text = str(exc) if isinstance(exc, ValueError | TypeError) else f"{exc!r}"
        error = InvalidInputError(text)
    params = {  # (how the ranks compare it, how a message shows it)
        k: (_canonical(v), repr(v)) for k, v in estimator.get_params(deep=False).items()
        if k != "comm"
    }  # fmt: skip
    views = gather_all(comm, (report_of(error), params, seen))
    merged = merge_reports([view[0] for view in views], comm.size)
    if merged is not None:
        raise InvalidInputError(str(merged))
    _same_everywhere([view[1] for view in views], [view[2] for view in views])
    return result


def _same_everywhere(params: list[dict], inputs: list) -> None:
    """An :class:`InvalidInputError` naming what differs between the ranks' parameters or
    inputs (rank 0 against the first rank that differs). Collective: no."""
    differ = sorted(k for k in params[0] if len({p.get(k, (None,))[0] for p in params}) > 1)
    if differ:
        rank = next(
            r for r, p in enumerate(params) if any(p[k][0] != params[0][k][0] for k in differ)
        )
        shown = ", ".join(
            f"{k}={params[0][k][1]} on rank 0 but {params[rank][k][1]} on rank {rank}"
            for k in differ[:3]
        )
        raise InvalidInputError(
            f"the ranks built different estimators ({shown}): every rank must call fit on "
            "an estimator with the same parameters"
        )
    if inputs[0] is None or all(seen == inputs[0] for seen in inputs):
        return
    rank, other = next((r, seen) for r, seen in enumerate(inputs) if seen != inputs[0])
    first = inputs[0]
    if first[0] != other[0]:
        problem = f"rank 0 passed {first[0]} but rank {rank} {other[0]}"
        advice = "every rank passes its own rows as arrays, or every rank the same HDF5 path"
    elif first[0] == "a path":
        problem = f"rank 0 passed {first[1]!r} but rank {rank} {other[1]!r}"
        advice = "every rank must pass the same HDF5 path"
    elif first[1] != other[1]:
        problem = f"rank 0's X has {first[1]} features but rank {rank}'s {other[1]}"
        advice = "every rank's rows must have the same columns"
    elif first[2] != other[2]:
        problem = f"rank 0's X holds {first[2]} but rank {rank}'s {other[2]}"
        advice = "pass X of one dtype (float64 or float32) on every rank"
    else:
        given = {True: "given", False: "not given"}
        problem = f"sample_weight {given[first[3]]} on rank 0 but {given[other[3]]} on rank {rank}"
        advice = "pass sample_weight on every rank or on none"
    raise InvalidInputError(f"the ranks' inputs differ: {problem}; {advice}")


def _validate_data(estimator, *args, **kwargs):
    """scikit-learn's ``validate_data``, its advice on NaN and infinite values (a
    paragraph that points to other estimators) shortened to one line. Collective: no."""
    try:
        return validate_data(estimator, *args, **kwargs)
    except ValueError as exc:
        first = str(exc).split("\n", 1)[0]
        if not first.startswith("Input ") or " contains " not in first:
            raise
        raise ValueError(
            f"{first.rstrip('.')}: drop or fix those rows first (sklearn.impute.SimpleImputer "
            "fills in NaN, in a pipeline)"
        ) from exc


def _plain(value):
    """A NumPy scalar as the Python value it holds (``0``, not ``np.int64(0)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _check_weights(sample_weight, n_rows: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.ndim == 0:
        weights = np.full(n_rows, float(weights))
    if weights.shape != (n_rows,):
        raise ValueError(f"sample_weight.shape == {weights.shape}, expected ({n_rows},)")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    return weights


def _local_rows(comm, X, y, weights) -> LocalData:
    """This rank's in-memory rows as the driver takes them (global row count and first
    row index from the ranks' counts; a rank may hold none), once the ranks agreed on
    their widths (:func:`_agreed`). Collective: yes."""
    counts = np.array([float(X.shape[0])])
    allreduce_sum(comm, counts)
    if counts[0] == 0:
        raise InvalidInputError("no rank passed any rows: found 0 samples in all")
    start = rows_before(comm, X.shape[0])
    info = DatasetInfo("", "X", "y", int(counts[0]), X.shape[1], X.dtype, np.dtype(np.float64))
    return LocalData(info, start, start + X.shape[0], X, y, weights)


class _Estimator(BaseEstimator):
    """What every estimator shares: the options, the fit through :func:`mpigd.fit`, and
    the rank-local decision values."""

    def __init__(
        self,
        *,
        l2: float = 0.0,
        l1: float = 0.0,
        optimizer: str = "auto",
        max_iter: int | None = None,
        tol: float = 1e-6,
        ftol: float = 1e-12,
        standardize: bool = False,
        comm=None,
    ):
        self.l2 = l2
        self.l1 = l1
        self.optimizer = optimizer
        self.max_iter = max_iter
        self.tol = tol
        self.ftol = ftol
        self.standardize = standardize
        self.comm = comm

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _validate(self, comm, X, y, sample_weight, *, numeric: bool):
        """This rank's rows checked (a CSR matrix's structure too: the kernels follow its
        indices), agreed over the ranks with the parameters (:func:`_agreed`).
        Collective: yes."""

        def work():
            if isinstance(X, str | os.PathLike):
                for name, given in (("y", y), ("sample_weight", sample_weight)):
                    if given is not None:  # the ranks read their rows from the file
                        raise ValueError(
                            f"{name} goes with rows in memory, not with an HDF5 path (each "
                            "rank reads its rows, labels and all, from the file); pass arrays"
                        )
                return X, None, None
            X_, y_ = _validate_data(
                self, checked_sparse(X) if sp.issparse(X) else X, y, accept_sparse="csr",
                dtype=[np.float64, np.float32], order="C", y_numeric=numeric,
                ensure_min_samples=1 if comm.size == 1 else 0,
            )  # fmt: skip
            if not numeric:
                check_classification_targets(y_)
            return X_, y_, _check_weights(sample_weight, X_.shape[0])

        return _agreed(comm, self, work, lambda result: _input_of(result[0], result[2]))

    def _options(self) -> dict:
        """The training options among this estimator's parameters (those of
        :class:`~mpigd.train.options.TrainOptions` but ``class_weight``, which ``fit``
        turns into row weights or passes itself)."""
        from .train.options import TrainOptions

        names = set(TrainOptions.names()) - {"class_weight"}
        params = self.get_params()
        if "alpha" in params:  # the log-link regressors: scikit-learn's name for l2
            params["l2"] = params.pop("alpha")
        return {name: value for name, value in params.items() if name in names}

    def _train(self, comm, data, model: str, **options):
        """:func:`mpigd.fit`, with its errors as :class:`InvalidInputError` and its
        convergence warning as scikit-learn's. Collective: yes."""
        from .train.driver import ConvergenceWarning, fit

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            try:
                fitted = fit(data, model, comm=comm, **self._options(), **options)
            except MpigdError as exc:
                if isinstance(exc, InvalidInputError):
                    raise
                raise InvalidInputError(str(exc)) from exc
        for warning in caught:
            category = warning.category
            if issubclass(category, ConvergenceWarning):
                category = SklearnConvergenceWarning
            warnings.warn(str(warning.message), category, stacklevel=3)
        self.n_iter_ = np.array([fitted.result.nit])
        return fitted.model

    def _scored(self, X, y, sample_weight, dtype):
        """This rank's labels, weights and predictions for ``score`` (a rank may have no
        rows). Collective: no."""
        y = np.asarray(y, dtype=dtype).ravel()
        w = np.ones(len(y)) if sample_weight is None else _check_weights(sample_weight, len(y))
        if len(y) == 0 and np.shape(X)[0] == 0:
            return y, w, y
        predicted = self._scored_values(X)
        if len(predicted) != len(y):
            raise ValueError(f"X has {len(predicted)} rows but y has {len(y)}")
        return y, w, predicted

    def _scored_values(self, X) -> np.ndarray:
        """What ``score`` compares with the labels: the predictions."""
        return self.predict(X)

    @limited
    def _decision(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = _validate_data(
            self, checked_sparse(X) if sp.issparse(X) else X, accept_sparse="csr",
            dtype=[np.float64, np.float32], reset=False,
            ensure_min_samples=1 if _comm(self).size == 1 else 0,  # a rank may have none
        )  # fmt: skip
        W = self.coef_.T if self.coef_.ndim == 2 else self.coef_
        z = X @ W
        return np.asarray(z) + self.intercept_


def _fit_regressor(estimator, X, y, sample_weight, model: str):
    """Fit a single-output regressor of ``model`` on this rank's rows (or a file's), and
    set ``coef_`` and ``intercept_``. Collective: yes."""
    comm = _comm(estimator)
    X, y, weights = estimator._validate(comm, X, y, sample_weight, numeric=True)
    if isinstance(X, str | os.PathLike):
        fitted = estimator._train(comm, X, model)
        estimator.n_features_in_ = len(fitted.coef)
    else:
        fitted = estimator._train(comm, _local_rows(comm, X, y.astype(np.float64), weights), model)
    estimator.coef_, estimator.intercept_ = fitted.coef, fitted.intercept
    return estimator


def scored_rows(estimator, X, y, sample_weight, dtype):
    """The communicator, and this rank's labels, weights and predictions for a score,
    once the ranks agreed that they can compute them (:func:`_agreed`; a rank may have
    no rows). Collective: yes."""
    comm = _comm(estimator)
    return comm, *_agreed(comm, estimator, lambda: estimator._scored(X, y, sample_weight, dtype))


def summed(comm, *values) -> np.ndarray:
    """The values summed over the ranks (one Allreduce). Collective: yes."""
    sums = np.array(values, dtype=np.float64)
    allreduce_sum(comm, sums)
    return sums


def r2_score(estimator, X, y, sample_weight=None) -> float:
    """R² of a regressor over every rank's rows, weighted as scikit-learn's (the mean of
    y first, then the sums of squares, each one reduction). Collective: yes."""
    comm, y, w, predicted = scored_rows(estimator, X, y, sample_weight, float)
    return regression(comm, y, predicted, weights=w)["r2"]


def accuracy(estimator, X, y, sample_weight=None) -> float:
    """The weighted share of every rank's rows that a classifier gets right.
    Collective: yes."""
    comm, y, w, predicted = scored_rows(estimator, X, y, sample_weight, None)
    right, total = summed(comm, w @ (predicted == y), w.sum())
    return float(right / total)
