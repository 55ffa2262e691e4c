"""The training objective over all ranks: the one place where partial sums are reduced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .kernels import for_rows, is_sparse
from .kernels.dense import row_blocks
from .kernels.losses import PointwiseLoss
from .kernels.theta import unpack_theta
from .parallel import allreduce_sum, rows_before, wtime


@dataclass
class Timings:
    """Seconds spent by this rank, accumulated with ``MPI.Wtime``."""

    compute: float = 0.0
    allreduce: float = 0.0


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


def moment_sums(X, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column sums of ``x - shift`` and ``(x - shift)^2`` over the rows of ``X``, in blocks
    without a copy of X (for CSR rows, over the stored values with the zeros counted per
    column). Collective: no."""
    if is_sparse(X):  # never densified: the zeros' share is counted per column
        from .kernels.sparse import column_sums

        return column_sums(X, shift)
    n = X.shape[1]
    total, squares = np.zeros(n), np.zeros(n)
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
    sums[:n], sums[n : 2 * n] = moment_sums(X_local, shift)
    sums[2 * n] = X_local.shape[0]
    allreduce_sum(comm, sums)
    return scaling_from_sums(sums[:n], sums[n : 2 * n], sums[2 * n], shift)


def penalized(theta, loss_sum, grad_sum, total, *, l2, scaling, n_features, n_outputs):
    """The mean loss and gradient at ``theta`` from reduced sums over rows of weight
    ``total``, mapped to the scaled parameters and with the ridge penalty
    ``(l2 / 2) ||W||^2`` added (the intercepts are not penalised). Collective: no."""
    grad = grad_sum / total
    if scaling is not None:
        grad = scaling.to_scaled_gradient(grad, n_outputs)
    W, _ = unpack_theta(theta, n_features, n_outputs)
    grad_W, _ = unpack_theta(grad, n_features, n_outputs)
    grad_W += l2 * W
    return loss_sum / total + 0.5 * l2 * float(np.sum(W * W)), grad


class Objective:
    """Regularised, weighted mean loss of a linear model over the rows of every rank.

    ::

        f(theta) = 1/S * sum_i s_i l(x_i W + b, y_i) + (l2 / 2) * ||W||^2,   S = sum_i s_i

    with row weights ``s_i`` (1 by default, so ``S = m``) and the pointwise loss ``l``:
    ``(z - y)^2 / 2`` for linear, ``log(1 + exp(z)) - y z`` for logistic and
    ``log sum_k exp(z_k) - z_y`` for softmax regression. The intercepts ``b`` are not
    penalised. With ``scaling`` the parameters are those of the standardised features
    (see :class:`Scaling`) and the penalty applies to them.

    Each call computes this rank's sums in one pass, packs them with the local weight
    and a stop flag (``[loss_sum, grad_sum..., weight_sum, stop_flag]``) into one float64
    buffer, adds the buffers of all ranks with one in-place ``Allreduce``, then divides
    by the reduced weight and adds the penalty. Every rank gets the same reduced numbers,
    so every rank's optimiser takes the same step. After each call,
    :attr:`stop_requested` says whether ``stop_flag()`` was true on any rank.

    Collective: yes (construction is one ``Exscan``; each evaluation one ``Allreduce``).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    X_local : ndarray, shape (k, n), float32 or float64
        This rank's rows; ``k`` may be 0 (the rank then contributes zeros).
    y_local : ndarray, shape (k,), float64
    loss : PointwiseLoss
    l2 : float
        Ridge penalty on ``W``, ``>= 0``.
    weights : ndarray, shape (k,), optional
        Row weights ``s_i >= 0``.
    scaling : Scaling, optional
    stop_flag : callable, optional
        ``() -> bool``, this rank's request to stop (a signal arrived, for example).
    """

    def __init__(
        self,
        comm,
        X_local,
        y_local,
        loss: PointwiseLoss,
        *,
        l2: float = 0.0,
        weights: np.ndarray | None = None,
        scaling: Scaling | None = None,
        stop_flag: Callable[[], bool] | None = None,
    ):
        self.comm = comm
        self.X_local = X_local
        self.y_local = y_local
        self.loss = loss
        self.kernels = for_rows(X_local)  # dense row blocks or CSR: the same sums
        self.l2 = float(l2)
        self.weights = weights
        self.scaling = scaling
        # Global index of this rank's first row, for mini-batches: ranks hold consecutive
        # blocks in rank order, so it is the row count of the ranks before this one.
        self.first_row = rows_before(comm, len(y_local))
        self.local_weight = self._weight(y_local, weights)
        self.stop_flag = stop_flag
        self.n_features = X_local.shape[1]
        self.n_outputs = loss.n_outputs
        self.size = (self.n_features + 1) * self.n_outputs  # length of theta
        self.stop_requested = False
        self.n_evals = 0
        self.timings = Timings()
        # The reduction buffer [loss_sum, grad_sum..., weight_sum, stop_flag], allocated
        # once: at n = 10^7 it is 80 MB, reduced in place every evaluation.
        self._buffer = np.empty(self.size + 3)
        self._curvature_at: tuple[np.ndarray, np.ndarray] | None = None  # (theta, d)

    # -- the reduction ---------------------------------------------------------------
    def _reduce(self, buffer: np.ndarray, local_weight: float, started: float) -> float:
        """Fill the two trailing slots, add ``buffer`` over all ranks, return the total
        weight. ``started`` is when the local computation began (for the timings)."""
        buffer[-2] = local_weight
        buffer[-1] = bool(self.stop_flag and self.stop_flag())
        reduce_start = wtime()
        allreduce_sum(self.comm, buffer)
        done = wtime()
        self.timings.compute += reduce_start - started
        self.timings.allreduce += done - reduce_start
        self.n_evals += 1
        self.stop_requested = bool(buffer[-1])
        return buffer[-2]

    @staticmethod
    def _weight(y: np.ndarray, weights: np.ndarray | None) -> float:
        """The weight of some rows: their count, or the sum of their weights."""
        return float(len(y)) if weights is None else float(weights.sum())

    # -- parameters ---------------------------------------------------------------------
    def raw(self, theta: np.ndarray) -> np.ndarray:
        """Raw-feature parameters for ``theta`` (the same array without scaling)."""
        return theta if self.scaling is None else self.scaling.to_raw(theta, self.n_outputs)

    def _finish(self, theta, loss_sum, grad_sum, total) -> tuple[float, np.ndarray]:
        return penalized(
            theta,
            loss_sum,
            grad_sum,
            total,
            l2=self.l2,
            scaling=self.scaling,
            n_features=self.n_features,
            n_outputs=self.n_outputs,
        )

    # -- evaluations ----------------------------------------------------------------------
    # Overflow only happens on a diverging run; the optimiser sees the non-finite result
    # and reports the divergence once, instead of a NumPy warning on every rank.
    @np.errstate(over="ignore", invalid="ignore")
    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at ``theta`` (shape (p,)); the gradient is a new array."""
        return self._loss_gradient(
            theta, self.X_local, self.y_local, self.weights, self.local_weight, wtime()
        )

    @np.errstate(over="ignore", invalid="ignore")
    def batch(self, theta: np.ndarray, rows: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient over the global rows ``rows`` only (a mini-batch).

        Each rank sums the rows of the batch that it holds; the weights of the batch are
        reduced with them, so the batch mean does not depend on the rank count.
        """
        start = wtime()
        mine = rows[(rows >= self.first_row) & (rows < self.first_row + len(self.y_local))]
        mine = mine - self.first_row
        weights = None if self.weights is None else self.weights[mine]
        y = self.y_local[mine]
        return self._loss_gradient(
            theta, self.X_local[mine], y, weights, self._weight(y, weights), start
        )

    def _loss_gradient(self, theta, X, y, weights, local_weight, start):
        """One packed reduction of the loss and gradient sums over rows ``X``, ``y``."""
        p = self.size
        buffer = self._buffer
        buffer[0], _ = self.kernels.local_sums(
            X, y, self.raw(theta), self.loss, out=buffer[1 : p + 1], weights=weights
        )
        total = self._reduce(buffer, local_weight, start)
        return self._finish(theta, buffer[0], buffer[1 : p + 1], total)

    @np.errstate(over="ignore", invalid="ignore")
    def hessian(self, theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Loss, gradient and Hessian (p, p) at ``theta`` in one ``Allreduce``.

        Single-output models only; the buffer holds ``(n + 1)^2`` numbers, so this is for
        ``n`` up to a few thousand (use :meth:`hessp` beyond).
        """
        start = wtime()
        p = self.size
        raw = self.raw(theta)
        buffer = np.empty(1 + p + p * p + 2)
        buffer[0], _ = self.kernels.local_sums(
            self.X_local, self.y_local, raw, self.loss, out=buffer[1 : p + 1], weights=self.weights
        )
        buffer[p + 1 : p + 1 + p * p] = self.kernels.local_hessian(
            self.X_local, self.y_local, raw, self.loss, weights=self.weights
        ).ravel()
        total = self._reduce(buffer, self.local_weight, start)
        f, g = self._finish(theta, buffer[0], buffer[1 : p + 1], total)
        H = buffer[p + 1 : p + 1 + p * p].reshape(p, p) / total
        if self.scaling is not None:
            A = self.scaling.matrix()
            H = A.T @ H @ A
        H[np.arange(p - 1), np.arange(p - 1)] += self.l2
        return f, g, H

    def _curvature(self, theta: np.ndarray) -> np.ndarray:
        """This rank's row curvatures at ``theta``, kept for the products that follow:
        Newton-CG asks for many at one ``theta``, each then one sweep over X."""
        if self._curvature_at is None or not np.array_equal(self._curvature_at[0], theta):
            d = self.kernels.local_curvature(
                self.X_local, self.y_local, self.raw(theta), self.loss, weights=self.weights
            )
            self._curvature_at = (np.array(theta, copy=True), d)
        return self._curvature_at[1]

    @np.errstate(over="ignore", invalid="ignore")
    def hessp(self, theta: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Hessian at ``theta`` times ``v``, in one ``Allreduce``. Single-output models."""
        start = wtime()
        p = self.size
        raw_v = v if self.scaling is None else self.scaling.to_raw(v)
        buffer = self._buffer[: p + 2]
        buffer[:p] = self.kernels.curvature_product(self.X_local, self._curvature(theta), raw_v)
        total = self._reduce(buffer, self.local_weight, start)
        Hv = buffer[:p] / total
        if self.scaling is not None:
            Hv = self.scaling.to_scaled_gradient(Hv)
        Hv[: p - 1] += self.l2 * v[: p - 1]
        return Hv
