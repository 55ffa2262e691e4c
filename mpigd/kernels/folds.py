"""Local sums of F fold models at once: one sweep over this rank's rows for all of them.

Cross-validation trains F models of the same kind on the same rows, each leaving out
the rows of its own fold. Their predictors ``X_b Theta`` come from one product with F
(times K) right-hand sides, so a block of rows is read from memory once for every fold.
Row ``i`` enters model ``j`` with the weight ``s_i c_j(y_i) [fold_i != label_j]``: the
row weight, model j's class weight, and zero on the model's own held-out fold.
Pure, no MPI; :mod:`mpigd.cv.objective` reduces these sums.
"""

from __future__ import annotations

import numpy as np

from . import compiled, is_sparse
from .dense import row_blocks
from .losses import PointwiseLoss, weighted


def fold_weights(y, fold, labels, weights=None, class_weights=None) -> np.ndarray:
    """``s_i c_j(y_i) [fold_i != labels_j]`` for rows ``i`` and models ``j``, shape
    (k, F). ``class_weights`` (F, classes) holds each model's weight per class.
    Collective: no."""
    w = (fold[:, None] != labels[None, :]).astype(np.float64)
    if weights is not None:
        w *= weights[:, None]
    if class_weights is not None:
        w *= class_weights[:, y.astype(np.intp)].T
    return w


def fold_sums(X, y, Theta, loss: PointwiseLoss, fold, labels, *, weights=None, class_weights=None):
    """Unscaled training loss and gradient sums of the F models ``Theta`` (p, F) over the
    rows of ``X``, and each model's unweighted loss sum over the rows of its own fold
    (its validation loss, as ``evaluate`` weighs rows): the compiled sweep where it
    applies (decided on every call; :func:`select_fold_sums` decides once), else
    :func:`reference_fold_sums`. ``labels`` (F,) is the fold each model
    leaves out; ``fold`` (k,) each row's fold. Returns ``(loss_sums (F,), held_out_sums
    (F,), grad_sums (p, F))``. Collective: no."""
    fused = compiled.fold_sums(X, y, Theta, loss, fold, labels, weights, class_weights)
    if fused is not None:
        return fused
    return reference_fold_sums(
        X, y, Theta, loss, fold, labels, weights=weights, class_weights=class_weights
    )


class FoldSums:
    """:func:`fold_sums` by the kernels chosen once for one X and loss
    (:func:`select_fold_sums`), called as :func:`fold_sums` is. ``name``: ``"compiled"``
    or ``"numpy"``; ``reason``: why NumPy, or None."""

    def __init__(self, sums, reason: str | None = None):
        self.name = "numpy" if reason is not None else "compiled"
        self.reason = reason
        self._sums = sums

    def __repr__(self) -> str:
        why = "" if self.reason is None else f": {self.reason}"
        return f"<{self.name} fold sums{why}>"

    def __call__(
        self, X, y, Theta, loss: PointwiseLoss, fold, labels, *, weights=None, class_weights=None
    ):
        return self._sums(
            X, y, Theta, loss, fold, labels, weights=weights, class_weights=class_weights
        )

    def add(self, into, X, y, Theta, loss: PointwiseLoss, fold, labels, **options) -> None:
        """Add the sums over these rows to ``into``: ``(loss_sums (2F,), grad ((n + 1)
        F,))``, the training then the validation loss sums and the gradient sums laid
        out as ``Theta``. The compiled sweep continues them as one sweep over all the
        rows would (bit for bit where the earlier rows are a multiple of
        :data:`~mpigd.partition.SWEEP_ROWS`). Collective: no."""
        if self.name == "compiled":
            compiled.fold_sweep(X, y, Theta, loss, fold, labels, **options, into=into)
            return
        loss_sums, held_out, grads = self._sums(X, y, Theta, loss, fold, labels, **options)
        F = len(loss_sums)
        into[0][:F] += loss_sums
        into[0][F:] += held_out
        into[1][...] += grads.ravel()


def select_fold_sums(X, loss: PointwiseLoss) -> FoldSums:
    """:func:`fold_sums` for rows laid out as ``X`` and ``loss``, chosen once: the
    compiled sweep for single-output models over C-ordered float32/float64 or CSR rows
    (where it is built and not turned off), else :func:`reference_fold_sums`. Arrays the
    compiled sweep cannot follow are a ``ValueError`` from it. Collective: no."""
    reason = compiled.unsuitable(X, loss, folds=True)
    return FoldSums(reference_fold_sums if reason is not None else compiled.fold_sweep, reason)


def _blocks(X):
    """``(rows, X_b)`` blocks of dense or CSR rows."""
    if not is_sparse(X):
        yield from row_blocks(X)
        return
    step = 4096
    for start in range(0, X.shape[0], step):
        yield slice(start, start + step), X[start : start + step]


def reference_fold_sums(
    X, y, Theta, loss: PointwiseLoss, fold, labels, *, weights=None, class_weights=None
):
    """:func:`fold_sums` in NumPy (and scipy.sparse): per block of rows, ``Z = X_b W``
    with the F models' weights side by side (n, F K), the losses of every (row, model)
    pair, then ``X_b^T R``. Collective: no."""
    n, K = X.shape[1], loss.n_outputs
    F = Theta.shape[1]
    W = Theta[: n * K].reshape(n, K, F).transpose(0, 2, 1).reshape(n, F * K)
    b = Theta[n * K :].T.reshape(F * K)  # (F, K) flattened like W's columns
    loss_sums, held_out_sums = np.zeros(F), np.zeros(F)
    grad_W = np.zeros((n, F * K))
    grad_b = np.zeros(F * K)
    for rows, X_b in _blocks(X):
        r = X_b.shape[0]
        Z = np.asarray(X_b @ W) + b
        y_b = np.repeat(y[rows], F)
        values, dz = loss.values_and_derivative(Z.reshape(r * F, K) if K > 1 else Z.ravel(), y_b)
        w = fold_weights(
            y[rows], fold[rows], labels, None if weights is None else weights[rows], class_weights
        )
        values = values.reshape(r, F)
        loss_sums += weighted(values, w).sum(axis=0)
        held_out = (fold[rows, None] == labels[None, :]).astype(np.float64)
        held_out_sums += weighted(values, held_out).sum(axis=0)
        R = weighted(dz.reshape(r, F, K), w[:, :, None]).reshape(r, F * K)
        grad_W += np.asarray(X_b.T @ R)
        grad_b += R.sum(axis=0)
    grad = np.empty_like(Theta, dtype=np.float64)
    grad[: n * K] = grad_W.reshape(n, F, K).transpose(0, 2, 1).reshape(n * K, F)
    grad[n * K :] = grad_b.reshape(F, K).T
    return loss_sums, held_out_sums, grad


def fold_scores(X, Theta, n_outputs: int, fold, labels) -> np.ndarray:
    """Each row's decision values under the model that holds its fold out: row ``i`` is
    scored by the model ``j`` with ``labels_j == fold_i``; shape (k,) or (k, K); rows of
    folds with no model get NaN. One sweep over X. Collective: no."""
    n, K = X.shape[1], n_outputs
    F = Theta.shape[1]
    column = np.full(int(max(fold.max(initial=0), labels.max(initial=0))) + 1, -1)
    column[labels] = np.arange(F)
    which = column[fold]
    out = np.full((X.shape[0], K), np.nan)
    for rows, X_b in _blocks(X):
        Z = np.asarray(X_b @ Theta[: n * K].reshape(n, K * F)).reshape(-1, K, F)
        Z += Theta[n * K :].reshape(K, F)
        j = which[rows]
        ok = j >= 0
        out[rows][ok] = Z[np.flatnonzero(ok), :, j[ok]]
    return out[:, 0] if K == 1 else out
