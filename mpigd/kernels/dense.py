"""Local sums of the loss, its gradient and its curvature over this rank's dense rows.

The second layer over :mod:`mpigd.kernels.losses`: these functions own X and the
parameters and return *unscaled*, optionally weighted sums over the rows they are given.
Averaging over the global weight, penalties and feature scaling belong to
:mod:`mpigd.objective`. Pure NumPy, no MPI; one pass over X in cache-sized row blocks.
"""

from __future__ import annotations

import numpy as np

from ..partition import BLOCK_BYTES, float_block_rows
from . import compiled
from .losses import PointwiseLoss, SquaredLoss, weighted
from .theta import unpack_theta


def row_blocks(X: np.ndarray, block_bytes: int = BLOCK_BYTES):
    """``(rows, X_b)`` for consecutive blocks of about ``block_bytes`` of float64 rows;
    ``X_b`` is widened to float64 (a copy only for float32 or integer X). Collective: no."""
    rows = float_block_rows(X.shape[1], block_bytes)
    for start in range(0, X.shape[0], rows):
        yield slice(start, start + rows), np.asarray(X[start : start + rows], dtype=np.float64)


def local_sums(X, y, theta, loss, out=None, *, weights=None, need_loss=True):
    """Unscaled loss and gradient sums over the rows of ``X``: the compiled fused kernel
    where it applies (:mod:`mpigd.kernels.compiled`), else :func:`reference_sums`.
    ``need_loss=False`` lets the compiled kernel skip the loss (its sum is then 0).
    Collective: no."""
    fused = compiled.dense_sums(X, y, theta, loss, out, weights=weights, need_loss=need_loss)
    return fused if fused is not None else reference_sums(X, y, theta, loss, out, weights=weights)


def reference_sums(
    X: np.ndarray,
    y: np.ndarray,
    theta: np.ndarray,
    loss: PointwiseLoss,
    out: np.ndarray | None = None,
    *,
    weights: np.ndarray | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[float, np.ndarray]:
    """Unscaled loss and gradient sums of a linear model over the rows of ``X``, in NumPy.

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
    W, b = unpack_theta(theta, n, K)
    grad_sum = np.zeros(theta.shape) if out is None else out
    grad_sum[:] = 0.0
    grad_W, grad_b = unpack_theta(grad_sum, n, K)
    loss_sum = 0.0
    for rows, X_b in row_blocks(X, block_bytes):
        values, dz = loss.values_and_derivative(X_b @ W + b, y[rows])
        if weights is not None:
            values, dz = weighted(values, weights[rows]), weighted(dz, weights[rows])
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
    w, b = unpack_theta(theta, n)
    hessian = np.zeros((n + 1, n + 1))
    for rows, X_b in row_blocks(X, block_bytes):
        d = loss.curvature(X_b @ w + b, y[rows])
        if weights is not None:
            d = weighted(d, weights[rows])
        A_b = np.hstack([X_b, np.ones((len(d), 1))])
        hessian += (A_b * d[:, None]).T @ A_b
    return hessian


def local_curvature(X, y, theta, loss, *, weights=None, block_bytes=BLOCK_BYTES) -> np.ndarray:
    """Each row's weighted curvature ``d_i = s_i l''(z_i)``, shape (k,): what
    :func:`curvature_product` needs, computed once per ``theta``. Collective: no."""
    w, b = unpack_theta(theta, X.shape[1])
    d = np.empty(X.shape[0])
    for rows, X_b in row_blocks(X, block_bytes):
        d[rows] = loss.curvature(X_b @ w + b, y[rows])
    return d if weights is None else weighted(d, weights)


def curvature_product(X, d, v) -> np.ndarray:
    """``sum_i d_i (x_i, 1) ((x_i, 1) . v)``, shape (n + 1,): the gradient at ``v`` of the
    squared loss ``sum_i d_i ((x_i, 1) . v)^2 / 2``, so the fused kernel computes it in one
    sweep (with ``d`` as row weights and zero labels). Collective: no."""
    return local_sums(X, np.zeros(len(d)), v, SquaredLoss(), weights=d, need_loss=False)[1]


def curvature_diagonal(X, d, block_bytes=BLOCK_BYTES) -> np.ndarray:
    """``sum_i d_i x_ij^2`` and ``sum_i d_i x_ij`` for every column j, shape (2, n): with
    ``sum_i d_i``, what the diagonal of the curvature sum (raw or standardised) needs.
    In blocks of rows, no copy of X. Collective: no."""
    sums = np.zeros((2, X.shape[1]))
    for rows, X_b in row_blocks(X, block_bytes):
        sums[0] += np.einsum("ij,ij,i->j", X_b, X_b, d[rows], optimize=True)
        sums[1] += d[rows] @ X_b
    return sums


def local_hessp(X, y, theta, v, loss, *, weights=None) -> np.ndarray:
    """Unscaled curvature sum times ``v``: ``sum_i s_i l''(z_i) (x_i, 1) ((x_i, 1) . v)``.

    Single-output losses only; shape (n + 1,). Collective: no.
    """
    return curvature_product(X, local_curvature(X, y, theta, loss, weights=weights), v)
