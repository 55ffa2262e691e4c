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
    """Labels that break a loss's ``rule``: how many, and one of them."""

    rule: str
    count: int
    example: float

    @classmethod
    def of(cls, rule: str, y: np.ndarray, bad: np.ndarray) -> LabelProblem | None:
        """The problem of the labels ``y[bad]``, or None if there are none."""
        return cls(rule, int(np.count_nonzero(bad)), float(y[bad][0])) if bad.any() else None


class PointwiseLoss(Protocol):
    """A loss ``l(z, y)`` of the linear predictors ``z`` (``n_outputs`` per row)."""

    name: str
    n_outputs: int

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


def class_label_problem(y: np.ndarray, n_classes: int | None = None) -> LabelProblem | None:
    """Why ``y`` are not class labels ``0 .. n_classes - 1``, or None. Collective: no."""
    bad = (y != np.round(y)) | (y < 0)
    if n_classes is not None:
        bad |= y >= n_classes
    allowed = "0, 1, 2, ..." if n_classes is None else f"0 .. {n_classes - 1}"
    return LabelProblem.of(f"class labels must be integers {allowed}", y, bad)


MODELS = ("linear", "logistic", "softmax")


def make_loss(model: str, n_classes: int = 2) -> PointwiseLoss:
    """The pointwise loss of ``model``; softmax needs the class count. Collective: no."""
    if model == "linear":
        return SquaredLoss()
    if model == "logistic":
        return LogisticLoss()
    if model == "softmax":
        return SoftmaxLoss(n_classes)
    raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
