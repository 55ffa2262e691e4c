"""The F objectives of a cross-validation, evaluated together: one sweep, one Allreduce.

Model j minimises the training objective of :class:`mpigd.objective.Objective` over the
rows outside fold j (with its own class weights and feature scaling). A call with the
points of the models that still run computes all their loss and gradient sums in one
sweep over this rank's rows (:func:`mpigd.kernels.folds.fold_sums`), packs them into
one buffer and adds it over the ranks with one ``Allreduce``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..evaluation import metrics
from ..kernels.folds import fold_scores, fold_sums, fold_weights
from ..kernels.losses import PointwiseLoss
from ..objective import Scaling, Timings, penalized
from ..parallel import allreduce_sum, wtime


class FoldObjectives:
    """``{j: theta_j} -> {j: (f_j, g_j)}`` for the fold models j, with

    ::

        f_j(theta) = 1/S_j sum_i w_ij l(x_i W + b, y_i) + (l2 / 2) ||W||^2,
        w_ij = s_i c_j(y_i) [fold_i != j],    S_j = sum_i w_ij

    Collective: yes (construction and each call are one ``Allreduce``).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    X_local, y_local : this rank's rows and labels
    loss : PointwiseLoss
    fold : ndarray, shape (k,), int64
        Each row's fold, 0 .. F-1.
    folds : int
    weights : ndarray (k,), optional
        Row weights ``s_i``.
    class_weights : ndarray (F, classes), optional
        Model j's weight for each class, ``c_j``.
    scalings : list of Scaling, optional
        Model j's feature standardisation.
    stop_flag : callable, optional
        ``() -> bool``, this rank's request to stop; reduced with every call.
    """

    def __init__(
        self,
        comm,
        X_local,
        y_local,
        loss: PointwiseLoss,
        fold: np.ndarray,
        folds: int,
        *,
        weights: np.ndarray | None = None,
        class_weights: np.ndarray | None = None,
        scalings: list[Scaling] | None = None,
        stop_flag: Callable[[], bool] | None = None,
    ):
        self.comm, self.X_local, self.y_local, self.loss = comm, X_local, y_local, loss
        self.fold, self.folds = fold, folds
        self.weights, self.class_weights, self.scalings = weights, class_weights, scalings
        self.stop_flag = stop_flag
        self.n_features = X_local.shape[1]
        self.n_outputs = loss.n_outputs
        self.size = (self.n_features + 1) * self.n_outputs
        self.l2 = 0.0
        self.n_evals = 0  # training evaluations, each one sweep
        self.score_passes = 0  # validation sweeps
        self.stop_requested = False
        self.timings = Timings()
        labels = np.arange(folds)
        self.total_weight = fold_weights(y_local, fold, labels, weights, class_weights).sum(axis=0)
        allreduce_sum(comm, self.total_weight)

    def raw(self, j: int, theta: np.ndarray) -> np.ndarray:
        """Model j's raw-feature parameters."""
        return theta if self.scalings is None else self.scalings[j].to_raw(theta, self.n_outputs)

    def _raw_matrix(self, points: dict[int, np.ndarray]) -> np.ndarray:
        return np.stack([self.raw(j, theta) for j, theta in points.items()], axis=1)

    @np.errstate(over="ignore", invalid="ignore")
    def __call__(self, points: dict[int, np.ndarray]) -> dict[int, tuple[float, np.ndarray]]:
        """Loss and gradient of each model j at ``points[j]``: one sweep, one Allreduce."""
        start = wtime()
        models = np.fromiter(points, dtype=np.int64)
        p, F = self.size, len(models)
        loss_sums, grads = fold_sums(
            self.X_local,
            self.y_local,
            self._raw_matrix(points),
            self.loss,
            self.fold,
            models,
            weights=self.weights,
            class_weights=None if self.class_weights is None else self.class_weights[models],
        )
        buffer = np.empty(F + p * F + 1)
        buffer[:F] = loss_sums
        buffer[F:-1] = grads.ravel()
        buffer[-1] = bool(self.stop_flag and self.stop_flag())
        reduce_start = wtime()
        allreduce_sum(self.comm, buffer)
        self.timings.compute += reduce_start - start
        self.timings.allreduce += wtime() - reduce_start
        self.n_evals += 1
        self.stop_requested = bool(buffer[-1])
        grads = buffer[F:-1].reshape(p, F)
        return {
            int(j): penalized(
                points[j],
                buffer[a],
                grads[:, a],
                self.total_weight[j],
                l2=self.l2,
                scaling=None if self.scalings is None else self.scalings[j],
                n_features=self.n_features,
                n_outputs=self.n_outputs,
            )
            for a, j in enumerate(models)
        }

    def validation(self, thetas: list[np.ndarray], model: str) -> list[dict]:
        """The metrics of each model j on fold j's rows (unweighted, as
        :func:`mpigd.evaluation.scoring.evaluate` computes them): one sweep over X, then
        the reductions of each fold's metrics. Collective: yes."""
        Theta = self._raw_matrix(dict(enumerate(thetas)))
        z = fold_scores(self.X_local, Theta, self.n_outputs, self.fold, np.arange(self.folds))
        self.score_passes += 1
        score = {"linear": metrics.regression, "logistic": metrics.binary}.get(
            model, metrics.multiclass
        )
        return [
            score(self.comm, self.y_local[self.fold == j], z[self.fold == j])
            for j in range(self.folds)
        ]
