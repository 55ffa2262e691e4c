"""Feature standardisation without a copy of X: the statistics of all ranks' rows in one
``Allreduce``, and the map between standardised-scale and raw-scale parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .io.stream import chunks
from .kernels import is_sparse
from .kernels.dense import row_blocks
from .kernels.theta import unpack_theta
from .parallel import allreduce_sum, rank_local


@dataclass(frozen=True)
class Scaling:
    """Feature standardisation ``x' = (x - mean) / std``, applied to the parameters.

    Training on standardised features never builds them: a linear model on ``x'`` with
    parameters ``theta'`` is the model on raw ``x`` with ``theta = A theta'``, where
    ``W = W' / std`` and ``b = b' - mean . W``. So the objective maps ``theta'`` to raw
    parameters, makes its usual pass over raw X, and maps the gradient back with ``A^T``
    (the Hessian with ``A^T H A``). A constant column (``std = 0``) standardises to zero:
    its ``1 / std`` is taken as 0, so its weight gets no gradient and stays exactly 0.
    """

    mean: np.ndarray  # (n,)
    std: np.ndarray  # (n,), 0 for constant columns

    @property
    def inv_std(self) -> np.ndarray:
        return np.divide(1.0, self.std, out=np.zeros_like(self.std), where=self.std > 0)

    def to_raw(self, theta: np.ndarray, n_outputs: int = 1) -> np.ndarray:
        """``A theta``: standardised-scale parameters -> raw-scale parameters."""
        out = np.empty_like(theta)
        W, b = unpack_theta(theta, len(self.mean), n_outputs)
        out_W, _ = unpack_theta(out, len(self.mean), n_outputs)
        out_W[...] = W * (self.inv_std if n_outputs == 1 else self.inv_std[:, None])
        out[len(out) - n_outputs :] = b - self.mean @ out_W
        return out

    def from_raw(self, theta: np.ndarray, n_outputs: int = 1) -> np.ndarray:
        """``A^-1 theta``: raw-scale parameters -> standardised-scale parameters (a
        constant column's weight becomes 0: it has no standardised feature)."""
        out = np.empty_like(theta)
        W, b = unpack_theta(theta, len(self.mean), n_outputs)
        out_W, _ = unpack_theta(out, len(self.mean), n_outputs)
        out_W[...] = W * (self.std if n_outputs == 1 else self.std[:, None])
        out[len(out) - n_outputs :] = b + self.mean @ np.where(
            (self.std > 0) if n_outputs == 1 else (self.std > 0)[:, None], W, 0.0
        )
        return out

    def to_scaled_gradient(self, grad: np.ndarray, n_outputs: int = 1) -> np.ndarray:
        """``A^T grad``: a raw-parameter gradient -> the standardised parameters' gradient."""
        out = np.empty_like(grad)
        n = len(self.mean)
        g_W, g_b = unpack_theta(grad, n, n_outputs)
        out_W, _ = unpack_theta(out, n, n_outputs)
        if n_outputs == 1:
            out_W[...] = (g_W - self.mean * g_b) * self.inv_std
        else:
            out_W[...] = (g_W - np.outer(self.mean, g_b)) * self.inv_std[:, None]
        out[len(out) - n_outputs :] = g_b
        return out

    def matrix(self) -> np.ndarray:
        """``A`` for one output, shape (n + 1, n + 1)."""
        n = len(self.mean)
        A = np.eye(n + 1)
        A[np.arange(n), np.arange(n)] = self.inv_std
        A[n, :n] = -self.mean * self.inv_std
        return A


def moment_sums(X, shift: np.ndarray, sums=None) -> tuple[np.ndarray, np.ndarray]:
    """Column sums of ``x - shift`` and ``(x - shift)^2`` over the rows of ``X``, in blocks
    without a copy of X (for CSR rows, over the stored values with the zeros counted per
    column), added to ``sums`` (``(total, squares)``, returned) where given. Dense rows
    are added a block at a time (:func:`~mpigd.kernels.dense.row_blocks`): a streamed
    pass whose blocks are multiples of them adds the same blocks in the same order as
    one over the rows in memory. Collective: no."""
    if is_sparse(X):  # never densified: the zeros' share is counted per column
        from .kernels.sparse import column_sums

        first, second = column_sums(X, shift)
        if sums is None:
            return first, second
        sums[0][...] += first
        sums[1][...] += second
        return sums
    n = X.shape[1]
    total, squares = (np.zeros(n), np.zeros(n)) if sums is None else sums
    for _, X_b in row_blocks(X):
        centred = X_b - shift
        total += centred.sum(axis=0)
        squares += np.einsum("ij,ij->j", centred, centred)
    return total, squares


def scaling_from_sums(total, squares, m: float, shift: np.ndarray) -> Scaling:
    """The :class:`Scaling` of ``m`` rows whose :func:`moment_sums` (over all ranks) are
    ``total`` and ``squares``. Collective: no."""
    offset = total / m
    variance = np.maximum(squares / m - offset * offset, 0.0)
    mean = shift + offset
    std = np.sqrt(variance)
    std[std <= 1e-12 * np.maximum(np.abs(mean), 1.0)] = 0.0
    return Scaling(mean, std)


def standardization(comm, X_local: np.ndarray, shift: np.ndarray) -> Scaling:
    """Feature means and standard deviations over all ranks' rows, in one ``Allreduce``.

    Each rank sums ``x - shift`` and ``(x - shift)^2`` over its rows
    (:func:`moment_sums`); with ``shift`` the same on every rank (row 0 of the file) and
    close to the data, ``E[(x - c)^2] - E[x - c]^2`` does not suffer the cancellation
    that raw sums of squares do. Columns with no spread (to rounding) get ``std = 0``;
    see :class:`Scaling`. Collective: yes.
    """
    n = X_local.shape[1]
    sums = np.zeros(2 * n + 1)
    # rows on disk (mpigd.io.stream.StreamedRows) are summed a block at a time; a read
    # that fails there is raised on every rank
    with rank_local(comm):
        for _, X_b in chunks(X_local):
            moment_sums(X_b, shift, (sums[:n], sums[n : 2 * n]))
    sums[2 * n] = X_local.shape[0]
    allreduce_sum(comm, sums)
    return scaling_from_sums(sums[:n], sums[n : 2 * n], sums[2 * n], shift)
