"""The F objectives of a cross-validation, evaluated together: one sweep, one Allreduce.

Model j minimises the training objective of :class:`mpigd.objective.Objective` over the
rows outside fold j (with its own class weights and feature scaling). A call with the
points of the models that still run computes all their loss and gradient sums in one
sweep over this rank's rows (:func:`mpigd.kernels.folds.fold_sums`), packs them into
one buffer and adds it over the ranks with one ``Allreduce``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from ..errors import Interrupted
from ..evaluation import metrics
from ..io.stream import chunks, like
from ..kernels.folds import fold_scores, select_fold_sums
from ..kernels.losses import PointwiseLoss, deviance_power
from ..objective import PackedReduction, Reduced, local_pass, penalized
from ..parallel import allreduce_sum, rank_local, wtime
from ..scaling import Scaling


class FoldObjectives(Reduced):
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
        ``() -> bool``, this rank's request to stop; reduced with every call, and when
        any rank asked, every rank raises :class:`~mpigd.errors.Interrupted`.
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
        # compiled or NumPy, chosen once; X_local may be rows on disk (mpigd.io.stream)
        self.fold_sums = select_fold_sums(like(X_local), loss)
        self.fold, self.folds = fold, folds
        self.weights, self.class_weights, self.scalings = weights, class_weights, scalings
        self.reduction = PackedReduction(comm, stop_flag)  # training evaluations
        self.n_features = X_local.shape[1]
        self.n_outputs = loss.n_outputs
        self.size = (self.n_features + 1) * self.n_outputs
        self.l2 = 0.0
        self.score_passes = 0  # validation sweeps
        # Each model's training weight from per-(fold, class) sums, not from the
        # (rows x folds) matrix of fold_weights.
        classes = 1 if class_weights is None else class_weights.shape[1]
        cls = 0 if class_weights is None else y_local.astype(np.intp)
        by_fold = np.bincount(
            fold * classes + cls, weights=weights, minlength=folds * classes
        ).reshape(folds, classes)
        outside = by_fold.sum(axis=0) - by_fold  # each model's training rows, per class
        total = outside[:, 0] if class_weights is None else (outside * class_weights).sum(1)
        sums = np.concatenate([total, np.bincount(fold, minlength=folds).astype(np.float64)])
        allreduce_sum(comm, sums)
        self.total_weight, self.fold_rows = sums[:folds], sums[folds:]
        # (theta, held-out loss sum) of each model's latest evaluation
        self._held_out: dict[int, tuple[np.ndarray, float]] = {}

    def penalize(self, l2: float) -> None:
        """Evaluate every model with the ridge penalty ``l2`` from now on (the next
        penalty of the path)."""
        self.l2 = float(l2)

    def watch(self, stop_flag) -> None:
        """Reduce ``stop_flag()`` with every evaluation from now on (a signal handler's)."""
        self.reduction.watch(stop_flag)

    def restore(self, n_evals: int, score_passes: int) -> None:
        """Continue the counts of evaluations and validation sweeps of a resumed run."""
        self.reduction.restore(n_evals)
        self.score_passes = score_passes

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
        buffer = np.zeros(2 * F + p * F + 1)  # [losses, held-out losses, gradients, stop]
        Theta = self._raw_matrix(points)
        failed = local_pass(buffer, lambda: self._sweep(buffer, Theta, models))
        self.reduction(buffer, start, failed)
        if self.stop_requested:  # a signal on some rank: every rank stops here alike
            raise Interrupted.agreed()
        grads = buffer[2 * F : -1].reshape(p, F)
        self._held_out.update({int(j): (points[j], buffer[F + a]) for a, j in enumerate(models)})
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

    def _sweep(self, buffer: np.ndarray, Theta: np.ndarray, models: np.ndarray) -> None:
        """Add the sums of the models ``models`` at ``Theta`` over this rank's rows into
        ``buffer``, a chunk of rows at a time (all rows at once when in memory)."""
        F = len(models)
        weights = self.weights
        class_weights = None if self.class_weights is None else self.class_weights[models]
        for rows, X_b in chunks(self.X_local):
            self.fold_sums.add(
                (buffer[: 2 * F], buffer[2 * F : -1]),
                X_b,
                self.y_local[rows],
                Theta,
                self.loss,
                self.fold[rows],
                models,
                weights=None if weights is None else weights[rows],
                class_weights=class_weights,
            )

    def validation(self, thetas: list[np.ndarray], model: str, metric: str) -> list[float]:
        """``metric`` of each model j on fold j's rows (unweighted, as
        :func:`mpigd.evaluation.scoring.evaluate` computes it). Log-loss and RMSE come
        from the held-out losses that the evaluations at ``thetas`` summed already;
        other metrics, or points that were not evaluated, take one sweep over X and
        the reductions of each fold's metric. Collective: yes."""
        losses = [self._held_out.get(j, (None, 0.0)) for j in range(self.folds)]
        from_losses = {"linear": "rmse", "logistic": "log_loss", "softmax": "log_loss"}
        if from_losses.get(model) == metric and all(
            cached is not None and np.array_equal(cached, theta)
            for (cached, _), theta in zip(losses, thetas, strict=True)
        ):
            mean = np.array([loss for _, loss in losses]) / self.fold_rows
            return (mean if metric == "log_loss" else np.sqrt(2.0 * mean)).tolist()
        Theta = self._raw_matrix(dict(enumerate(thetas)))
        every = np.arange(self.folds)
        with rank_local(self.comm):  # a streamed read that fails, on every rank
            z = np.concatenate(
                [
                    fold_scores(X_b, Theta, self.n_outputs, self.fold[rows], every)
                    for rows, X_b in chunks(self.X_local)
                ]
                or [fold_scores(like(self.X_local), Theta, self.n_outputs, self.fold[:0], every)]
            )
        self.score_passes += 1
        power = deviance_power(model, self.loss.parameter)
        score = partial(metrics.of_model, kind=model, power=power, auc=metric == "roc_auc")
        held_out = [self.fold == j for j in range(self.folds)]
        return [score(self.comm, y=self.y_local[rows], z=z[rows])[metric] for rows in held_out]
