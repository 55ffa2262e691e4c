"""The training objective over all ranks: the one place where partial sums are reduced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import MpigdError
from .io.stream import chunks, like
from .kernels import select
from .kernels.losses import PointwiseLoss
from .kernels.theta import unpack_theta
from .parallel import agree, allreduce_sum, rows_before, wtime
from .scaling import Scaling


@dataclass
class Timings:
    """Seconds spent by this rank, accumulated with ``MPI.Wtime``."""

    compute: float = 0.0
    allreduce: float = 0.0


class PackedReduction:
    """The one ``Allreduce`` of an evaluation, and its bookkeeping.

    A caller fills a float64 buffer with this rank's sums, all of them, leaving the last
    slot to this object, which puts this rank's stop request there (``stop_flag()``: a
    signal arrived, say), adds the buffers of all ranks in place, and keeps the count of
    evaluations, the seconds spent computing before it and reducing, and whether any
    rank asked to stop (:attr:`stop_requested`). Both objectives reduce through one:
    :class:`Objective` and :class:`mpigd.selection.objective.FoldObjectives`.
    Collective: yes (each call).
    """

    def __init__(self, comm, stop_flag: Callable[[], bool] | None = None):
        self.comm = comm
        self.stop_flag = stop_flag
        self.timings = Timings()
        self.n_evals = 0
        self.stop_requested = False

    def __call__(
        self, buffer: np.ndarray, started: float, failed: MpigdError | None = None
    ) -> np.ndarray:
        """Add ``buffer`` over all ranks, in place, after its last slot is set to this
        rank's stop request; ``started`` is when the local computation began. Returns
        ``buffer``. ``failed`` is this rank's error in its pass (a streamed read that
        failed): it makes the slot NaN, so every rank learns of it from the sum, and the
        error is then raised on every rank (:func:`~mpigd.parallel.agree`)."""
        buffer[-1] = np.nan if failed else bool(self.stop_flag and self.stop_flag())
        reduce_start = wtime()
        allreduce_sum(self.comm, buffer)
        done = wtime()
        self.timings.compute += reduce_start - started
        self.timings.allreduce += done - reduce_start
        if np.isnan(buffer[-1]):
            agree(self.comm, failed)
        self.n_evals += 1
        self.stop_requested = bool(buffer[-1])
        return buffer

    def watch(self, stop_flag: Callable[[], bool] | None) -> None:
        """Reduce ``stop_flag()`` from now on (a signal handler's flag, say)."""
        self.stop_flag = stop_flag

    def restore(self, n_evals: int) -> None:
        """Continue the count of evaluations of a run that is resumed."""
        self.n_evals = n_evals


def local_pass(buffer: np.ndarray, work: Callable[[], None]) -> MpigdError | None:
    """Run this rank's pass ``work()``, which fills ``buffer``; a failure of the pass
    (rows streamed from a file that became unreadable) is returned, with ``buffer``
    zeroed, for the :class:`PackedReduction` to raise on every rank. Collective: no."""
    try:
        work()
    except MpigdError as exc:
        buffer[:] = 0.0
        return exc
    return None


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


class Reduced:
    """What an objective that reduces through a :class:`PackedReduction` (its
    ``reduction``) tells of its evaluations."""

    reduction: PackedReduction

    @property
    def n_evals(self) -> int:
        """Evaluations so far: each one pass over the rows and one ``Allreduce``."""
        return self.reduction.n_evals

    @property
    def timings(self) -> Timings:
        return self.reduction.timings

    @property
    def stop_requested(self) -> bool:
        """Whether any rank's ``stop_flag()`` was true at the latest evaluation."""
        return self.reduction.stop_requested


class Objective(Reduced):
    """Regularised, weighted mean loss of a linear model over the rows of every rank.

    ::

        f(theta) = 1/S * sum_i s_i l(x_i W + b, y_i) + (l2 / 2) * ||W||^2,   S = sum_i s_i

    with row weights ``s_i`` (1 by default, so ``S = m``) and the pointwise loss ``l``:
    ``(z - y)^2 / 2`` for linear, ``log(1 + exp(z)) - y z`` for logistic and
    ``log sum_k exp(z_k) - z_y`` for softmax regression. The intercepts ``b`` are not
    penalised. With ``scaling`` the parameters are those of the standardised features
    (see :class:`~mpigd.scaling.Scaling`) and the penalty applies to them.

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
        # compiled or NumPy, dense or CSR, chosen once; X_local may be rows on disk
        self.kernels = select(like(X_local), loss)
        self.l2 = float(l2)
        self.weights = weights
        self.scaling = scaling
        # Global index of this rank's first row, for mini-batches: ranks hold consecutive
        # blocks in rank order, so it is the row count of the ranks before this one.
        self.first_row = rows_before(comm, len(y_local))
        self.local_weight = self._weight(y_local, weights)
        self.reduction = PackedReduction(comm, stop_flag)
        self.n_features = X_local.shape[1]
        self.n_outputs = loss.n_outputs
        self.size = (self.n_features + 1) * self.n_outputs  # length of theta
        # The reduction buffer [loss_sum, grad_sum..., weight_sum, stop_flag], allocated
        # once: at n = 10^7 it is 80 MB, reduced in place every evaluation.
        self._buffer = np.empty(self.size + 3)
        self._curvature_at: tuple[np.ndarray, np.ndarray] | None = None  # (theta, d)

    # -- the reduction ---------------------------------------------------------------
    def _reduce(self, buffer, local_weight: float, started: float, failed=None) -> float:
        """Put this rank's row weight in the slot before the last, add ``buffer`` over all
        ranks (:class:`PackedReduction`; ``failed``, this rank's error in its pass, is
        raised on every rank), return the total weight. ``started`` is when the local
        computation began (for the timings)."""
        buffer[-2] = local_weight
        return self.reduction(buffer, started, failed)[-2]

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

    # -- local passes: one kernel call a chunk of rows (all of them, when in memory) ------
    def _sums(self, X, y, weights, raw, out, also: Callable | None = None) -> float:
        """Loss and gradient sums over rows ``X`` into ``out`` (the loss sum returned):
        the first chunk's sums straight into ``out``, each later one continuing them (the
        compiled sweeps add a streamed pass's blocks as one sweep over the rows in memory
        does, bit for bit). ``also(rows, X_b)`` is called on each chunk too (in the same
        pass over the disk, for rows streamed from it)."""
        loss_sum = None
        for rows, X_b in chunks(X):
            if also is not None:
                also(rows, X_b)
            loss_sum, _ = self.kernels.local_sums(
                X_b, y[rows], raw, self.loss, out, weights=_rows_of(weights, rows), after=loss_sum
            )
        if loss_sum is None:  # no rows at all
            out[:] = 0.0
            return 0.0
        return loss_sum

    def _added(self, shape, part: Callable) -> np.ndarray:
        """``sum`` of ``part(rows, X_b)`` over the chunks of this rank's rows (zeros of
        ``shape`` for none), added in chunk order."""
        total = None
        for rows, X_b in chunks(self.X_local):
            value = part(rows, X_b)
            total = value if total is None else np.add(total, value, out=total)
        return np.zeros(shape) if total is None else total

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
        """Loss and gradient over the global rows ``rows`` only (a mini-batch); rows in
        memory only (a streamed run reads whole passes).

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
        raw = self.raw(theta)

        def work():
            buffer[0] = self._sums(X, y, weights, raw, buffer[1 : p + 1])

        failed = local_pass(buffer, work)
        total = self._reduce(buffer, local_weight, start, failed)
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
        y, weights = self.y_local, self.weights
        H = buffer[p + 1 : p + 1 + p * p].reshape(p, p)
        H[...] = 0.0

        def curvature(rows, X_b):
            H[...] += self.kernels.local_hessian(
                X_b, y[rows], raw, self.loss, weights=_rows_of(weights, rows)
            )

        def work():
            buffer[0] = self._sums(self.X_local, y, weights, raw, buffer[1 : p + 1], curvature)

        failed = local_pass(buffer, work)
        total = self._reduce(buffer, self.local_weight, start, failed)
        f, g = self._finish(theta, buffer[0], buffer[1 : p + 1], total)
        H = buffer[p + 1 : p + 1 + p * p].reshape(p, p) / total
        if self.scaling is not None:
            A = self.scaling.matrix()
            H = A.T @ H @ A
        H[np.arange(p - 1), np.arange(p - 1)] += self.l2
        return f, g, H

    def _curvature_sum(self, theta, shape, part: Callable) -> tuple[np.ndarray, np.ndarray]:
        """``sum`` over the chunks of ``part(X_b, d_b)`` (:meth:`_added`), ``d`` the rows'
        curvatures at ``theta``, and ``d``. ``d`` (one number a row, the only per-row state
        Newton-CG keeps) is kept for the products that follow at the same ``theta``, and
        computed in the same pass as the first of them."""
        if self._curvature_at is not None and np.array_equal(self._curvature_at[0], theta):
            d = self._curvature_at[1]
            return self._added(shape, lambda rows, X_b: part(X_b, d[rows])), d
        raw, y, weights = self.raw(theta), self.y_local, self.weights
        self._curvature_at = None  # a pass that fails leaves nothing half-made
        d = np.empty(len(y))

        def each(rows, X_b):
            d[rows] = self.kernels.local_curvature(
                X_b, y[rows], raw, self.loss, weights=_rows_of(weights, rows)
            )
            return part(X_b, d[rows])

        total = self._added(shape, each)
        self._curvature_at = (np.array(theta, copy=True), d)
        return total, d

    @np.errstate(over="ignore", invalid="ignore")
    def hessp(self, theta: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Hessian at ``theta`` times ``v``, in one ``Allreduce``. Single-output models."""
        start = wtime()
        p = self.size
        raw_v = v if self.scaling is None else self.scaling.to_raw(v)
        buffer = self._buffer[: p + 2]

        def work():
            buffer[:p], _ = self._curvature_sum(
                theta, p, lambda X_b, d_b: self.kernels.curvature_product(X_b, d_b, raw_v)
            )

        failed = local_pass(buffer, work)
        total = self._reduce(buffer, self.local_weight, start, failed)
        Hv = buffer[:p] / total
        if self.scaling is not None:
            Hv = self.scaling.to_scaled_gradient(Hv)
        Hv[: p - 1] += self.l2 * v[: p - 1]
        return Hv

    @np.errstate(over="ignore", invalid="ignore")
    def hess_diagonal(self, theta: np.ndarray) -> np.ndarray:
        """The diagonal of the Hessian at ``theta``, in one ``Allreduce`` of 2n + 1 sums
        (``sum d x^2``, ``sum d x`` per column and ``sum d``): Newton-CG's preconditioner.
        With scaling, the diagonal of ``A^T H A``: ``(H_jj - 2 mean_j H_jn + mean_j^2
        H_nn) / std_j^2``. Single-output models."""
        start = wtime()
        n = self.n_features
        buffer = np.empty(2 * n + 3)

        def work():
            diagonal, d = self._curvature_sum(theta, (2, n), self.kernels.curvature_diagonal)
            buffer[: 2 * n] = diagonal.ravel()
            buffer[2 * n] = d.sum()

        failed = local_pass(buffer, work)
        total = self._reduce(buffer, self.local_weight, start, failed)
        squares, linear, h_nn = buffer[:n] / total, buffer[n : 2 * n] / total, buffer[2 * n] / total
        if self.scaling is not None:
            mean = self.scaling.mean
            squares = (squares - 2 * mean * linear + mean * mean * h_nn) * self.scaling.inv_std**2
        return np.append(squares + self.l2, h_nn)


def _rows_of(weights: np.ndarray | None, rows: slice) -> np.ndarray | None:
    return None if weights is None else weights[rows]
