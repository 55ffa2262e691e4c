"""Local sums of the loss and its gradient over this rank's rows. Pure NumPy, no MPI.

Two layers, as in scikit-learn's ``_loss`` / ``LinearModelLoss``: a pointwise loss
``l(z, y)`` that knows nothing of X, and :func:`local_sums`, which owns X and the
parameters ``theta = (w, b)`` and returns *unscaled* sums. Averaging over the global row
count and the penalty belong to :mod:`mpigd.objective`, after the reduction.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


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
    """A loss ``l(z, y)`` of the linear predictor ``z = x.w + b`` and a label ``y``."""

    name: str

    def sum_and_derivative(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """``sum_i l(z_i, y_i)`` and the vector ``dl/dz_i``; shapes (k,) -> (float, (k,))."""
        ...

    def label_problem(self, y: np.ndarray) -> str | None:
        """Why these labels are invalid for the loss, or None."""
        ...


class SquaredLoss:
    """``l(z, y) = (z - y)^2 / 2``: least squares, any real ``y``."""

    name = "linear"

    def sum_and_derivative(self, z, y):
        residual = z - y
        return 0.5 * float(residual @ residual), residual

    def label_problem(self, y):
        return None


class LogisticLoss:
    """``l(z, y) = log(1 + exp(z)) - y z``: the negative log-likelihood, ``y`` in {0, 1}."""

    name = "logistic"

    def sum_and_derivative(self, z, y):
        softplus, sigmoid = log1pexp_and_expit(z)
        return float(softplus.sum() - y @ z), sigmoid - y

    def label_problem(self, y):
        bad = np.count_nonzero((y != 0) & (y != 1))
        if bad:
            example = y[(y != 0) & (y != 1)][0]
            return f"logistic labels must be 0 or 1; found {bad} other values (e.g. {example:g})"
        return None


LOSSES: dict[str, PointwiseLoss] = {"linear": SquaredLoss(), "logistic": LogisticLoss()}

#: Rows per block in :func:`local_sums`: about 2 MiB of float64 features, so that the
#: second product with a block (``X_b^T r``) reads it from cache rather than memory.
BLOCK_BYTES = 1 << 21


def local_sums(
    X: np.ndarray,
    y: np.ndarray,
    theta: np.ndarray,
    loss: PointwiseLoss,
    out: np.ndarray | None = None,
    *,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[float, np.ndarray]:
    """Unscaled loss and gradient sums of a linear model over the rows of ``X``.

    With ``theta = (w, b)`` and ``z_i = x_i.w + b``::

        loss_sum = sum_i l(z_i, y_i)
        grad_sum = sum_i l'(z_i, y_i) * (x_i, 1)

    One pass over ``X`` in cache-sized row blocks: each block is multiplied twice
    (``X_b w`` and ``X_b^T r``) while it is still in cache, and float32 blocks are
    widened to float64 there, so X is read from memory once and sums are in float64.
    Collective: no.

    Parameters
    ----------
    X : ndarray, shape (k, n), float32 or float64
        This rank's rows (``k`` may be 0).
    y : ndarray, shape (k,), float64
    theta : ndarray, shape (n + 1,), float64
        Weights followed by the intercept.
    loss : PointwiseLoss
    out : ndarray, shape (n + 1,), optional
        Where to write ``grad_sum``.

    Returns
    -------
    loss_sum : float
    grad_sum : ndarray, shape (n + 1,)
        ``out`` if given; the last entry is the intercept's.
    """
    n = X.shape[1]
    w, b = theta[:n], theta[n]
    grad_sum = np.zeros(n + 1) if out is None else out
    grad_sum[:] = 0.0
    loss_sum = 0.0
    rows = max(1, block_bytes // (8 * max(n, 1)))
    for start in range(0, X.shape[0], rows):
        X_b = np.asarray(X[start : start + rows], dtype=np.float64)
        block_loss, dz = loss.sum_and_derivative(X_b @ w + b, y[start : start + rows])
        loss_sum += block_loss
        grad_sum[:n] += X_b.T @ dz
        grad_sum[n] += dz.sum()
    return loss_sum, grad_sum
