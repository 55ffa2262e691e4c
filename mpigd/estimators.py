"""scikit-learn estimators that train over MPI: :class:`LinearRegression`,
:class:`LogisticRegression` (binary and multinomial), :class:`PoissonRegressor`,
:class:`GammaRegressor`, :class:`TweedieRegressor`, :class:`HuberRegressor` and
:class:`LinearSVC`.

Under ``mpiexec`` every rank builds the same estimator and calls ``fit`` with **its own
rows** (a NumPy array or a scipy CSR matrix), or every rank with the same HDF5 path (each
then reads its own block of rows). The training is :func:`mpigd.fit`'s: one Allreduce per
evaluation, the same update on every rank, so every rank ends with bit-identical fitted
attributes. ``predict``, ``predict_proba`` and ``decision_function`` are rank-local;
``score`` is collective (every rank gets the score over all ranks' rows). In one process
they are ordinary scikit-learn estimators and pass its ``check_estimator``.

The objective is mpigd's, ``mean_i s_i l_i / mean_i s_i + (l2 / 2) ||W||^2 + l1 ||W||_1``:
scikit-learn's ``LogisticRegression(C=C)`` and ``LinearSVC(C=C)`` are ``l2 = 1 / (C S)``
with ``S`` the total row weight (m without weights; liblinear also penalises the
intercept, mpigd never does), ``Ridge(alpha=a)`` is ``l2 = a / m``, ``Lasso(alpha=a)`` is
``l1 = a`` (on ``(1/2) mean (y - z)^2``). The log-link regressors take scikit-learn's
``alpha``, which is their ``l2``: the objectives are the same. The estimators hold no
communicator once fitted (``comm=None`` means ``COMM_WORLD`` at each collective call), so
``clone``, ``deepcopy`` and pickle work.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from .errors import InvalidInputError, MpigdError
from .estimator_base import (  # it says what to install where scikit-learn is missing
    ClassifierMixin,
    RegressorMixin,
    _comm,
    _Estimator,
    _fit_regressor,
    _local_rows,
    _plain,
    accuracy,
    r2_score,
    scored_rows,
)
from .evaluation.metrics import deviance
from .kernels.losses import DEFAULT_EPSILON, DEFAULT_POWER, deviance_power

__all__ = [
    "GammaRegressor",
    "HuberRegressor",
    "InvalidInputError",
    "LinearRegression",
    "LinearSVC",
    "LogisticRegression",
    "PoissonRegressor",
    "TweedieRegressor",
]


class LinearRegression(RegressorMixin, _Estimator):
    """Least squares ``(1/2) mean_i s_i (x_i w + b - y_i)^2 / mean s + (l2/2)||w||^2
    + l1 ||w||_1`` over the rows of every rank (ridge with ``l2``, lasso with ``l1``).

    Parameters are those of :func:`mpigd.fit`; ``comm`` (default ``COMM_WORLD``) is the
    communicator whose ranks each pass their rows. Fitted: ``coef_`` (n,),
    ``intercept_``, ``n_iter_``, ``n_features_in_``.
    """

    _model = "linear"

    def fit(self, X, y=None, sample_weight=None):
        """Train on this rank's rows ``X`` (k, n), ``y`` (k,) (or, for a path, the file's
        ``X`` and ``y``). Collective: yes."""
        return _fit_regressor(self, X, y, sample_weight, self._model)

    def predict(self, X) -> np.ndarray:
        """``X w + b`` for this rank's rows. Collective: no."""
        return self._decision(X)

    def score(self, X, y, sample_weight=None) -> float:
        """R² over every rank's rows (each rank passes its own). Collective: yes."""
        return r2_score(self, X, y, sample_weight)


class HuberRegressor(LinearRegression):
    """Robust regression: ``mean_i s_i rho(y_i - x_i w - b) / mean s + (l2/2)||w||^2 +
    l1 ||w||_1`` with ``rho(r) = r^2 / 2`` for ``|r| <= epsilon``, ``epsilon |r| -
    epsilon^2 / 2`` beyond. The scale of the residuals is fixed (standardise y, or choose
    ``epsilon`` in its units); scikit-learn's ``HuberRegressor`` fits a scale ``sigma``
    beside ``w`` and penalises ``alpha ||w||^2`` on a sum, so the two agree where its
    ``sigma`` comes out near 1. Fitted as :class:`LinearRegression`.
    """

    _model = "huber"

    def __init__(
        self, *, epsilon: float = DEFAULT_EPSILON, l2: float = 0.0, l1: float = 0.0,
        optimizer: str = "auto", max_iter: int | None = None, tol: float = 1e-6,
        ftol: float = 1e-12, standardize: bool = False, comm=None,
    ):  # fmt: skip
        super().__init__(
            l2=l2, l1=l1, optimizer=optimizer, max_iter=max_iter, tol=tol, ftol=ftol,
            standardize=standardize, comm=comm,
        )  # fmt: skip
        self.epsilon = epsilon


class _LogLinkRegressor(RegressorMixin, _Estimator):
    """A regressor with the log link: the mean is ``exp(x w + b)``, the penalty
    scikit-learn's ``alpha`` (mpigd's ``l2``), the score D² of the deviance."""

    _model = ""

    def __init__(
        self, *, alpha: float = 1.0, l1: float = 0.0, optimizer: str = "auto",
        max_iter: int | None = None, tol: float = 1e-6, ftol: float = 1e-12,
        standardize: bool = False, comm=None,
    ):  # fmt: skip
        self.alpha = alpha
        self.l1 = l1
        self.optimizer = optimizer
        self.max_iter = max_iter
        self.tol = tol
        self.ftol = ftol
        self.standardize = standardize
        self.comm = comm

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags

    def fit(self, X, y=None, sample_weight=None):
        """Train on this rank's rows ``X`` (k, n) and targets ``y`` (k,) (or, for a path,
        the file's). Collective: yes."""
        return _fit_regressor(self, X, y, sample_weight, self._model)

    def predict(self, X) -> np.ndarray:
        """The mean ``exp(x w + b)`` of each of this rank's rows. Collective: no."""
        with np.errstate(over="ignore"):  # a mean beyond float64 is inf
            return np.exp(self._decision(X))

    def score(self, X, y, sample_weight=None) -> float:
        """D² over every rank's rows: the share of the deviance of the weighted mean of y
        that the model explains, as scikit-learn's. Collective: yes."""
        comm, y, w, log_mean = scored_rows(self, X, y, sample_weight, float)
        power = deviance_power(self._model, getattr(self, "power", None))
        return deviance(comm, y, log_mean, power, weights=w)["d2"]

    def _scored_values(self, X) -> np.ndarray:
        """The log of the mean (the decision values): no mean that underflows to 0."""
        return self._decision(X)


class PoissonRegressor(_LogLinkRegressor):
    """Poisson regression with the log link, ``y >= 0`` (counts, or rates with the
    exposure as ``sample_weight``): ``mean_i s_i (exp(z_i) - y_i z_i) / mean s +
    (alpha/2)||w||^2``, the minimiser of scikit-learn's ``PoissonRegressor(alpha)``.
    Fitted: ``coef_`` (n,), ``intercept_``, ``n_iter_``, ``n_features_in_``."""

    _model = "poisson"


class GammaRegressor(_LogLinkRegressor):
    """Gamma regression with the log link, ``y > 0``: ``mean_i s_i (z_i + y_i exp(-z_i))
    / mean s + (alpha/2)||w||^2``, the minimiser of scikit-learn's
    ``GammaRegressor(alpha)``. Fitted as :class:`PoissonRegressor`."""

    _model = "gamma"


class TweedieRegressor(_LogLinkRegressor):
    """Tweedie regression of ``power`` 1 < p < 2 (compound Poisson-Gamma: exact zeros and
    positive amounts) with the log link, ``y >= 0``, the minimiser of scikit-learn's
    ``TweedieRegressor(power=p, link="log", alpha)``; other powers are
    :class:`PoissonRegressor` (1), :class:`GammaRegressor` (2) or least squares (0).
    Fitted as :class:`PoissonRegressor`."""

    _model = "tweedie"

    def __init__(
        self, *, power: float = DEFAULT_POWER, alpha: float = 1.0, l1: float = 0.0,
        optimizer: str = "auto", max_iter: int | None = None, tol: float = 1e-6,
        ftol: float = 1e-12, standardize: bool = False, comm=None,
    ):  # fmt: skip
        super().__init__(
            alpha=alpha, l1=l1, optimizer=optimizer, max_iter=max_iter, tol=tol, ftol=ftol,
            standardize=standardize, comm=comm,
        )  # fmt: skip
        self.power = power


class _Classifier(ClassifierMixin, _Estimator):
    """A classifier on any class labels (numbers or strings; ``classes_`` sorted as
    ``numpy.unique`` sorts them): ``_binary`` trains two classes, ``_multi`` more (None:
    two only). ``class_weight``: None, ``"balanced"`` or ``{label: weight}`` (classes
    not named weigh 1)."""

    _binary, _multi = "logistic", "softmax"

    def __init__(
        self, *, l2: float = 1e-4, l1: float = 0.0, optimizer: str = "auto",
        max_iter: int | None = None, tol: float = 1e-6, ftol: float = 1e-12,
        standardize: bool = False, class_weight: str | None = None, comm=None,
    ):  # fmt: skip
        super().__init__(
            l2=l2, l1=l1, optimizer=optimizer, max_iter=max_iter, tol=tol, ftol=ftol,
            standardize=standardize, comm=comm,
        )  # fmt: skip
        self.class_weight = class_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = self._multi is not None
        return tags

    def fit(self, X, y=None, sample_weight=None):
        """Train on this rank's rows ``X`` (k, n) and labels ``y`` (k,) (or, for a path,
        the file's ``X`` and ``y``). Collective: yes."""
        comm = _comm(self)
        X, y, weights = self._validate(comm, X, y, sample_weight, numeric=False)
        data = self._classes(comm, X, y, weights)
        kind = self._binary if len(self.classes_) == 2 else self._multi
        if kind is None:
            raise InvalidInputError(
                "Only binary classification is supported. The type of the target is "
                f"multiclass: {len(self.classes_)} classes (LogisticRegression takes more)"
            )
        options = {"labels": "auto"} if isinstance(data, str | os.PathLike) else {}
        class_weight = self.class_weight
        if isinstance(class_weight, dict):  # {label: weight}: into the row weights
            data, class_weight = self._weighted(data, class_weight), None
        model = self._train(comm, data, kind, class_weight=class_weight, **options)
        if isinstance(data, str | os.PathLike):
            self.n_features_in_ = len(model.coef)
        if kind == self._binary:
            self.coef_, self.intercept_ = model.coef[None, :], np.array([model.intercept])
        else:
            self.coef_, self.intercept_ = model.coef.T.copy(), np.array(model.intercept)
        return self

    def _classes(self, comm, X, y, weights):
        """Set ``classes_`` from every rank's labels; the data to train on (the path, or
        this rank's rows with class indices for labels). Collective: yes."""
        from .train.labels import file_classes, global_classes

        try:  # labels of several kinds are seen alike on every rank
            self.classes_ = file_classes(comm, X) if y is None else global_classes(comm, y)
        except MpigdError as exc:
            raise InvalidInputError(str(exc)) from exc
        if len(self.classes_) < 2:
            raise InvalidInputError(
                "this solver needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {_plain(self.classes_[0])!r}"
            )
        if isinstance(X, str | os.PathLike):
            return X
        y_index = np.searchsorted(self.classes_, y).astype(np.float64)
        return _local_rows(comm, X, y_index, weights)

    def _weighted(self, data, class_weight: dict):
        """This rank's rows with a ``{label: weight}`` dict multiplied into their
        weights. Collective: no."""
        if isinstance(data, str | os.PathLike):
            raise InvalidInputError("a class_weight dict needs rows in memory")
        unknown = set(class_weight) - set(self.classes_.tolist())
        if unknown:
            raise InvalidInputError(
                f"class_weight names labels that are not classes: {sorted(map(str, unknown))}"
            )
        per_class = np.array([class_weight.get(c, 1.0) for c in self.classes_], float)
        by_row = per_class[data.y.astype(np.intp)]
        return replace(data, weights=by_row if data.weights is None else data.weights * by_row)

    def decision_function(self, X) -> np.ndarray:
        """Scores (k,) for two classes (positive: ``classes_[1]``), (k, K) for more.
        Collective: no."""
        z = self._decision(X)
        return z[:, 0] if len(self.classes_) == 2 else z

    def predict(self, X) -> np.ndarray:
        """The class of each of this rank's rows with the largest score. Collective: no."""
        z = self.decision_function(X)
        index = (z > 0).astype(np.intp) if z.ndim == 1 else z.argmax(axis=1)
        return self.classes_[index]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy over every rank's rows (each rank passes its own). Collective: yes."""
        return accuracy(self, X, y, sample_weight)


class LogisticRegression(_Classifier):
    """Logistic regression, binary (two classes) or multinomial (softmax, more), on any
    class labels. The default ``l2 = 1e-4`` (scikit-learn's ``C = 1 / (l2 S)``). Fitted:
    ``classes_``, ``coef_`` (1, n) or (K, n), ``intercept_`` (1,) or (K,), ``n_iter_``,
    ``n_features_in_``.
    """

    def decision_function(self, X) -> np.ndarray:
        """Log-odds (k,) for two classes, scores (k, K) for more. Collective: no."""
        return super().decision_function(X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (k, K), columns in the order of ``classes_``. Collective: no."""
        from scipy.special import expit, softmax

        z = self.decision_function(X)
        if len(self.classes_) == 2:
            p = expit(z)
            return np.column_stack([1.0 - p, p])
        return softmax(z, axis=1)

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))


class LinearSVC(_Classifier):
    """The L2-loss linear SVM of two classes: ``mean_i s_i max(0, 1 - t_i z_i)^2 / mean s
    + (l2/2)||w||^2`` with ``t_i = +-1``, scikit-learn's ``LinearSVC`` (its default
    squared hinge) with ``C = 1 / (l2 S)``, except that liblinear also penalises the
    intercept (compare with a large ``intercept_scaling``, or with the intercept fixed).
    ``decision_function`` is the margin ``z``. Fitted as :class:`LogisticRegression`
    for two classes; more is an error.
    """

    _binary, _multi = "svm", None
