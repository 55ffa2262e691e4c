"""The training objective over all ranks: the one place where partial sums are reduced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .losses import PointwiseLoss, local_sums
from .parallel import allreduce_sum, wtime


@dataclass
class Timings:
    """Seconds spent by this rank, accumulated with ``MPI.Wtime``."""

    read: float = 0.0
    compute: float = 0.0
    allreduce: float = 0.0


class Objective:
    """Regularised mean loss of a linear model over the rows of every rank.

    ::

        f(w, b) = 1/m * sum_i l(x_i.w + b, y_i) + (l2 / 2) * ||w||^2

    with ``m`` the global row count and ``l`` the pointwise loss: ``(z - y)^2 / 2`` for
    linear regression, ``log(1 + exp(z)) - y z`` for logistic regression. The intercept
    ``b`` is not penalised. Parameters are packed as ``theta = (w_1..w_n, b)``.

    Each call computes this rank's loss and gradient sums in one pass, packs
    ``[loss_sum, grad_sum (n + 1), row_count, stop_flag]`` into one float64 buffer, adds
    the buffers of all ranks with one in-place ``Allreduce``, then divides by the reduced
    row count and adds the penalty. Every rank gets the same reduced numbers, so every
    rank's optimiser takes the same step. The stop flag rides along for free: after each
    call, :attr:`stop_requested` says whether ``stop_flag()`` was true on any rank.

    Collective: yes (each call is one ``Allreduce``).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    X_local : ndarray, shape (k, n), float32 or float64
        This rank's rows; ``k`` may be 0 (the rank then contributes zeros).
    y_local : ndarray, shape (k,), float64
    loss : PointwiseLoss
    l2 : float
        Ridge penalty on ``w``, ``>= 0``.
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
        stop_flag: Callable[[], bool] | None = None,
    ):
        self.comm = comm
        self.X_local = X_local
        self.y_local = y_local
        self.loss = loss
        self.l2 = float(l2)
        self.n_features = X_local.shape[1]
        self.stop_flag = stop_flag
        self.stop_requested = False
        self.n_evals = 0
        self.timings = Timings()
        self._buffer = np.empty(self.n_features + 4)

    # Overflow only happens on a diverging run; the optimiser sees the non-finite result
    # and reports the divergence once, instead of a NumPy warning on every rank.
    @np.errstate(over="ignore", invalid="ignore")
    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at ``theta`` (shape (n + 1,)); the gradient is a new array."""
        n = self.n_features
        buffer = self._buffer
        start = wtime()
        buffer[0], _ = local_sums(
            self.X_local, self.y_local, theta, self.loss, out=buffer[1 : n + 2]
        )
        buffer[n + 2] = len(self.y_local)
        buffer[n + 3] = bool(self.stop_flag and self.stop_flag())
        reduce_start = wtime()
        allreduce_sum(self.comm, buffer)
        done = wtime()
        self.timings.compute += reduce_start - start
        self.timings.allreduce += done - reduce_start
        self.n_evals += 1

        n_global = buffer[n + 2]
        self.stop_requested = bool(buffer[n + 3])
        w = theta[:n]
        loss = buffer[0] / n_global + 0.5 * self.l2 * float(w @ w)
        grad = buffer[1 : n + 2] / n_global
        grad[:n] += self.l2 * w
        return loss, grad
