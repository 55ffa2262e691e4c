"""Pointwise losses ``l(z, y)`` of the linear predictors, which know nothing of X.

The first of two layers, as in scikit-learn's ``_loss`` / ``LinearModelLoss``: the row
sums over X (:mod:`mpigd.kernels.dense`) call these on each block of predictors. Pure
NumPy, no MPI.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np


def log1pexp_and_expit(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log(1 + exp(z))`` and ``1 / (1 + exp(-z))`` for any finite ``z``, without overflow.

    Both come from one ``e = exp(-|z|)``, which lies in [0, 1]:
    ``log(1 + exp(z)) = max(z, 0) + log1p(e)`` and the sigmoid is ``1 / (1 + e)`` for
    ``z >= 0``, ``e / (1 + e)`` otherwise. Half the cost of ``np.logaddexp`` plus
    ``scipy.special.expit`` (``benchmarks/local_pass.py``), with the same accuracy.

    Collective: no.
    """
    e = np.exp(-np.abs(z))
    return np.maximum(z, 0.0) + np.log1p(e), np.where(z >= 0, 1.0, e) / (1.0 + e)


class LabelProblem(NamedTuple):
    """Labels that break a loss's ``rule``: how many, the first of them, and the indices
    of the first and the last of them in ``y``."""

    rule: str
    count: int
    example: float
    first: int
    last: int

    @classmethod
    def of(cls, rule: str, y: np.ndarray, bad: np.ndarray) -> LabelProblem | None:
        """The problem of the labels ``y[bad]``, or None if there are none."""
        where = np.flatnonzero(bad)
        if len(where) == 0:
            return None
        first, last = int(where[0]), int(where[-1])
        return cls(rule, len(where), float(y[first]), first, last)


class PointwiseLoss(Protocol):
    """A loss ``l(z, y)`` of the linear predictors ``z`` (``n_outputs`` per row), with
    its one ``parameter`` (tweedie's power, huber's epsilon; 0 for the others)."""

    name: str
    n_outputs: int
    parameter: float

    def values_and_derivative(self, z: np.ndarray, y: np.ndarray):
        """``l(z_i, y_i)`` (k,) and ``dl/dz`` (the shape of ``z``)."""
        ...

    def curvature(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``d2l/dz2`` (k,); single-output losses only."""
        ...

    def label_problem(self, y: np.ndarray) -> LabelProblem | None:
        """Why these labels are invalid for the loss, or None."""
        ...


class SquaredLoss:
    """``l(z, y) = (z - y)^2 / 2``: least squares, any real ``y``."""

    name = "linear"
    n_outputs = 1
    parameter = 0.0

    def values_and_derivative(self, z, y):
        residual = z - y
        return 0.5 * residual * residual, residual

    def curvature(self, z, y):
        return np.ones_like(z)

    def label_problem(self, y):
        return None


class LogisticLoss:
    """``l(z, y) = log(1 + exp(z)) - y z``: the negative log-likelihood, ``y`` in {0, 1}."""

    name = "logistic"
    n_outputs = 1
    parameter = 0.0

    def values_and_derivative(self, z, y):
        softplus, sigmoid = log1pexp_and_expit(z)
        return softplus - y * z, sigmoid - y

    def curvature(self, z, y):
        _, sigmoid = log1pexp_and_expit(z)
        return sigmoid * (1.0 - sigmoid)

    def label_problem(self, y):
        rule = "logistic labels must be 0 or 1 (any two values: --labels auto)"
        return LabelProblem.of(rule, y, (y != 0) & (y != 1))


class SoftmaxLoss:
    """``l(z, y) = log(sum_k exp(z_k)) - z_y``: multinomial logistic regression.

    Labels are the integers ``0 .. n_outputs - 1``.
    """

    name = "softmax"
    parameter = 0.0

    def __init__(self, n_outputs: int):
        self.n_outputs = n_outputs

    def values_and_derivative(self, z, y):
        labels = y.astype(np.intp)
        rows = np.arange(len(labels))
        shifted = z - z.max(axis=1, keepdims=True)  # exp cannot overflow
        e = np.exp(shifted)
        total = e.sum(axis=1)
        values = np.log(total) - shifted[rows, labels]
        probabilities = e / total[:, None]
        probabilities[rows, labels] -= 1.0
        return values, probabilities

    def curvature(self, z, y):
        raise ValueError("softmax has a matrix curvature per row; use lbfgs")

    def label_problem(self, y):
        return class_label_problem(y, self.n_outputs)


#: The loss parameters' defaults: tweedie's power (compound Poisson-Gamma, between the
#: Poisson and the Gamma), huber's epsilon (scikit-learn's ``HuberRegressor``'s).
DEFAULT_POWER, DEFAULT_EPSILON = 1.5, 1.35


def weighted(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``values * weights`` (weights broadcast along the last axis of ``values`` if it
    has more), 0 where a weight is 0: a row that does not count adds nothing, also where
    its loss overflowed to inf, as in the compiled kernels. Collective: no."""
    w = weights if values.ndim == weights.ndim else weights[:, None]
    out = np.zeros(np.broadcast_shapes(values.shape, w.shape))
    return np.multiply(values, w, out=out, where=w != 0)


def times_y(y: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``y * e``, 0 where y is 0 (even where e overflowed to inf). Collective: no."""
    return np.multiply(y, e, out=np.zeros(np.broadcast_shapes(y.shape, e.shape)), where=y != 0)


def _exp(z: np.ndarray) -> np.ndarray:
    """``exp(z)``, inf where it overflows (a loss there is inf: the line search steps
    back, and training that cannot start says so), without NumPy's warning."""
    with np.errstate(over="ignore"):
        return np.exp(z)


class PoissonLoss:
    """``l(z, y) = exp(z) - y z``: Poisson deviance with the log link (up to a term in y
    alone), ``y >= 0``: counts, or rates with the exposure as the row weight."""

    name = "poisson"
    n_outputs = 1
    parameter = 0.0

    def values_and_derivative(self, z, y):
        mu = _exp(z)
        return mu - y * z, mu - y

    def curvature(self, z, y):
        return _exp(z)

    def label_problem(self, y):
        return LabelProblem.of("poisson targets must be >= 0 (counts or rates)", y, y < 0)


class GammaLoss:
    """``l(z, y) = z + y exp(-z)``: Gamma deviance with the log link (up to a term in y
    alone), ``y > 0``."""

    name = "gamma"
    n_outputs = 1
    parameter = 0.0

    def values_and_derivative(self, z, y):
        ye = times_y(y, _exp(-z))
        return z + ye, 1.0 - ye

    def curvature(self, z, y):
        return times_y(y, _exp(-z))

    def label_problem(self, y):
        return LabelProblem.of("gamma targets must be > 0", y, ~(y > 0))


class TweedieLoss:
    """``l(z, y) = exp((2-p) z) / (2-p) - y exp((1-p) z) / (1-p)``: Tweedie deviance of
    power ``1 < p < 2`` (compound Poisson-Gamma) with the log link, up to a term in y
    alone; ``y >= 0``."""

    name = "tweedie"
    n_outputs = 1

    def __init__(self, power: float = DEFAULT_POWER):
        if not 1.0 < power < 2.0:
            raise ValueError(f"tweedie power must lie strictly between 1 and 2, got {power}")
        self.parameter = float(power)

    def values_and_derivative(self, z, y):
        p = self.parameter
        e2, ye1 = _exp((2.0 - p) * z), times_y(y, _exp((1.0 - p) * z))
        return e2 / (2.0 - p) - ye1 / (1.0 - p), e2 - ye1

    def curvature(self, z, y):
        p = self.parameter
        return (2.0 - p) * _exp((2.0 - p) * z) - (1.0 - p) * times_y(y, _exp((1.0 - p) * z))

    def label_problem(self, y):
        return LabelProblem.of("tweedie targets must be >= 0", y, y < 0)


class HuberLoss:
    """``l(z, y) = rho(y - z)``, ``rho(r) = r^2 / 2`` for ``|r| <= epsilon`` and
    ``epsilon |r| - epsilon^2 / 2`` beyond: robust regression at a fixed scale, any real
    ``y``. The curvature is the generalised one (1 inside, 0 outside)."""

    name = "huber"
    n_outputs = 1

    def __init__(self, epsilon: float = DEFAULT_EPSILON):
        if not epsilon > 0:
            raise ValueError(f"huber epsilon must be > 0, got {epsilon}")
        self.parameter = float(epsilon)

    def values_and_derivative(self, z, y):
        e = self.parameter
        d = z - y
        a = np.abs(d)
        return np.where(a <= e, 0.5 * d * d, e * a - 0.5 * e * e), np.clip(d, -e, e)

    def curvature(self, z, y):
        return (np.abs(z - y) <= self.parameter).astype(np.float64)

    def label_problem(self, y):
        return None


class SquaredHingeLoss:
    """``l(z, y) = max(0, 1 - t z)^2`` with ``t = 2y - 1``: the L2-loss linear SVM,
    ``y`` in {0, 1}. The curvature is the generalised one (2 inside the margin, else 0)."""

    name = "svm"
    n_outputs = 1
    parameter = 0.0

    def values_and_derivative(self, z, y):
        t = 2.0 * y - 1.0
        h = np.maximum(1.0 - t * z, 0.0)
        return h * h, -2.0 * t * h

    def curvature(self, z, y):
        return np.where(1.0 - (2.0 * y - 1.0) * z > 0.0, 2.0, 0.0)

    def label_problem(self, y):
        rule = "svm labels must be 0 or 1 (any two values: --labels auto)"
        return LabelProblem.of(rule, y, (y != 0) & (y != 1))


def class_label_problem(y: np.ndarray, n_classes: int | None = None) -> LabelProblem | None:
    """Why ``y`` are not class labels ``0 .. n_classes - 1``, or None. Collective: no."""
    bad = (y != np.round(y)) | (y < 0)
    if n_classes is not None:
        bad |= y >= n_classes
    allowed = "0, 1, 2, ..." if n_classes is None else f"0 .. {n_classes - 1}"
    return LabelProblem.of(f"class labels must be integers {allowed}", y, bad)


#: Every model, and those that classify (their labels are classes: ``--labels auto``,
#: class weights, accuracy), those with two classes, and those with the log link (their
#: prediction is ``exp(z)``, their targets are scored by deviance).
MODELS = ("linear", "logistic", "softmax", "poisson", "gamma", "tweedie", "huber", "svm")
CLASSIFIERS = ("logistic", "softmax", "svm")
BINARY = ("logistic", "svm")
LOG_LINK = ("poisson", "gamma", "tweedie")
#: The deviance power of each log-link model without a power of its own.
POWERS = {"poisson": 1.0, "gamma": 2.0}


def deviance_power(model: str, parameter: float | None = None) -> float | None:
    """The power of the deviance that scores a log-link ``model`` (poisson 1, gamma 2,
    tweedie its ``parameter``), None for the others. Collective: no."""
    return POWERS.get(model, parameter) if model in LOG_LINK else None


def model_name(model: str) -> str:
    """How messages name a model: ``logistic regression``, ``linear SVM``. Collective: no."""
    return "linear SVM" if model == "svm" else f"{model} regression"


def make_loss(
    model: str,
    n_classes: int = 2,
    *,
    power: float = DEFAULT_POWER,
    epsilon: float = DEFAULT_EPSILON,
) -> PointwiseLoss:
    """The pointwise loss of ``model``; softmax needs the class count, tweedie its
    ``power``, huber its ``epsilon``. Collective: no."""
    simple = {
        "linear": SquaredLoss,
        "logistic": LogisticLoss,
        "poisson": PoissonLoss,
        "gamma": GammaLoss,
        "svm": SquaredHingeLoss,
    }
    if model in simple:
        return simple[model]()
    if model == "softmax":
        return SoftmaxLoss(n_classes)
    if model == "tweedie":
        return TweedieLoss(power)
    if model == "huber":
        return HuberLoss(epsilon)
    raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
