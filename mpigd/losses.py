"""Local sums of the loss, its gradient and its curvature over this rank's rows.

Pure NumPy, no MPI. Two layers, as in scikit-learn's ``_loss`` / ``LinearModelLoss``: a
pointwise loss ``l(z, y)`` that knows nothing of X, and the ``local_*`` functions, which
own X and the parameters and return *unscaled*, optionally weighted sums. Averaging over
the global weight, penalties and feature scaling belong to :mod:`mpigd.objective`.

Parameters are one flat vector ``theta``: the ``(n + 1, K)`` matrix whose first ``n``
rows are the weights of the ``K`` outputs and whose last row holds their intercepts, in
C order. ``K = 1`` for linear and logistic regression, so ``theta = (w_1..w_n, b)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

#: Rows per block: about 2 MiB of float64 features, so that the second product with a
#: block (``X_b^T r``) reads it from cache rather than memory.
BLOCK_BYTES = 1 << 21


def log1pexp_and_expit(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log(1 + exp(z))`` and ``1 / (1 + exp(-z))`` for any finite ``z``, without overflow.

    Both come from one ``e = exp(-|z|)``, which lies in [0, 1]:
    ``log(1 + exp(z)) = max(z, 0) + log1p(e)`` and the sigmoid is ``1 / (1 + e)`` for
    ``z >= 0``, ``e / (1 + e)`` otherwise. Half the cost of ``np.logaddexp`` plus
    ``scipy.special.expit`` (``benchmarks/local_pass.py``), with the same accuracy.
    """
    e = np.exp(-np.abs(z))
    return np.maximum(z, 0.0) + np.log1p(e), np.where(z >= 0, 1.0, e) / (1.0 + e)


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

    def label_problem(self, y: np.ndarray) -> str | None:
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
        bad = (y != 0) & (y != 1)
        if bad.any():
            return (
                f"logistic labels must be 0 or 1; found {np.count_nonzero(bad)} other "
                f"values (e.g. {y[bad][0]:g})"
            )
        return None


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


def class_label_problem(y: np.ndarray, n_classes: int | None = None) -> str | None:
    """Why ``y`` are not class labels ``0 .. n_classes - 1``, or None."""
    bad = (y != np.round(y)) | (y < 0)
    if n_classes is not None:
        bad |= y >= n_classes
    if bad.any():
        allowed = "0, 1, 2, ..." if n_classes is None else f"0 .. {n_classes - 1}"
        return (
            f"class labels must be integers {allowed}; found {np.count_nonzero(bad)} other "
            f"values (e.g. {y[bad][0]:g})"
        )
    return None


MODELS = ("linear", "logistic", "softmax")


def make_loss(model: str, n_classes: int = 2) -> PointwiseLoss:
    """The pointwise loss of ``model``; softmax needs the class count."""
    if model == "linear":
        return SquaredLoss()
    if model == "logistic":
        return LogisticLoss()
    if model == "softmax":
        return SoftmaxLoss(n_classes)
    raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")


def split(theta: np.ndarray, n_features: int, n_outputs: int = 1):
    """``(W, b)`` of ``theta``: W a view, (n,) or (n, K); b a scalar or a (K,) view."""
    if n_outputs == 1:
        return theta[:n_features], theta[n_features]
    return theta[: n_features * n_outputs].reshape(n_features, n_outputs), theta[-n_outputs:]


def row_blocks(X: np.ndarray, block_bytes: int = BLOCK_BYTES):
    """``(rows, X_b)`` for consecutive blocks of about ``block_bytes`` of float64 rows;
    ``X_b`` is widened to float64 (a copy only for float32 or integer X)."""
    rows = max(1, block_bytes // (8 * max(X.shape[1], 1)))
    for start in range(0, X.shape[0], rows):
        yield slice(start, start + rows), np.asarray(X[start : start + rows], dtype=np.float64)


def local_sums(
    X: np.ndarray,
    y: np.ndarray,
    theta: np.ndarray,
    loss: PointwiseLoss,
    out: np.ndarray | None = None,
    *,
    weights: np.ndarray | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[float, np.ndarray]:
    """Unscaled loss and gradient sums of a linear model over the rows of ``X``.

    With ``z_i = x_i W + b`` and row weights ``s_i`` (1 without ``weights``)::

        loss_sum = sum_i s_i l(z_i, y_i)
        grad_sum = sum_i s_i (x_i, 1)^T l'(z_i, y_i)        (flattened like theta)

    One pass over ``X`` in cache-sized row blocks: each block is multiplied twice
    (``X_b W`` and ``X_b^T r``) while it is still in cache, and float32 blocks are
    widened to float64 there, so X is read from memory once and sums are in float64.
    Collective: no.

    Parameters
    ----------
    X : ndarray, shape (k, n), float32 or float64
        This rank's rows (``k`` may be 0).
    y : ndarray, shape (k,), float64
    theta : ndarray, shape ((n + 1) K,), float64
    loss : PointwiseLoss
    out : ndarray, shape ((n + 1) K,), optional
        Where to write ``grad_sum``.
    weights : ndarray, shape (k,), optional

    Returns
    -------
    loss_sum : float
    grad_sum : ndarray, shape ((n + 1) K,)
    """
    n, K = X.shape[1], loss.n_outputs
    W, b = split(theta, n, K)
    grad_sum = np.zeros(theta.shape) if out is None else out
    grad_sum[:] = 0.0
    grad_W, grad_b = split(grad_sum, n, K)
    loss_sum = 0.0
    for rows, X_b in row_blocks(X, block_bytes):
        values, dz = loss.values_and_derivative(X_b @ W + b, y[rows])
        if weights is not None:
            values = values * weights[rows]
            dz = dz * (weights[rows] if K == 1 else weights[rows, None])
        loss_sum += values.sum()
        grad_W += X_b.T @ dz
        if K == 1:
            grad_sum[n] += dz.sum()
        else:
            grad_b += dz.sum(axis=0)
    return float(loss_sum), grad_sum


def local_hessian(X, y, theta, loss, *, weights=None, block_bytes=BLOCK_BYTES) -> np.ndarray:
    """Unscaled curvature sum ``sum_i s_i l''(z_i) (x_i, 1)^T (x_i, 1)``, shape (n + 1, n + 1).

    Single-output losses only. Collective: no.
    """
    n = X.shape[1]
    w, b = split(theta, n)
    hessian = np.zeros((n + 1, n + 1))
    for rows, X_b in row_blocks(X, block_bytes):
        d = loss.curvature(X_b @ w + b, y[rows])
        if weights is not None:
            d = d * weights[rows]
        A_b = np.hstack([X_b, np.ones((len(d), 1))])
        hessian += (A_b * d[:, None]).T @ A_b
    return hessian


def local_hessp(X, y, theta, v, loss, *, weights=None, block_bytes=BLOCK_BYTES) -> np.ndarray:
    """Unscaled curvature sum times ``v``: ``sum_i s_i l''(z_i) (x_i, 1) ((x_i, 1) . v)``.

    Single-output losses only; shape (n + 1,). Collective: no.
    """
    n = X.shape[1]
    w, b = split(theta, n)
    v_w, v_b = split(v, n)
    out = np.zeros(n + 1)
    for rows, X_b in row_blocks(X, block_bytes):
        d = loss.curvature(X_b @ w + b, y[rows])
        if weights is not None:
            d = d * weights[rows]
        r = d * (X_b @ v_w + v_b)
        out[:n] += X_b.T @ r
        out[n] += r.sum()
    return out
