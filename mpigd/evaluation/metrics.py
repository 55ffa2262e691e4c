"""Quality metrics of a model over data spread across ranks.

Each rank passes its own rows' targets and scores; every metric is built from sums,
minima and maxima that one reduction combines, so the result is the metric of all rows,
identical on every rank. Definitions follow scikit-learn's (``r2_score``, ``log_loss``,
``roc_auc_score``, ...), which the tests compare against.
"""

from __future__ import annotations

import numpy as np

from ..kernels.losses import BINARY, LOG_LINK, times_y
from ..parallel import allreduce_sum, min_max_over_ranks


def of_model(comm, kind: str, y, z, *, power: float | None = None, auc: bool = True) -> dict:
    """The metrics of a ``kind`` model with decision values ``z`` on targets ``y``:
    :func:`regression` (linear, huber), :func:`deviance` of ``power`` (the log-link
    models), :func:`binary` (logistic; svm with its hinge loss) or :func:`multiclass`
    (softmax). Collective: yes."""
    if kind in LOG_LINK:
        return deviance(comm, y, z, power)
    if kind in BINARY:
        return binary(comm, y, z, auc=auc, margin=kind == "svm")
    if kind == "softmax":
        return multiclass(comm, y, z)
    return regression(comm, y, z)


def _sums(comm, *values) -> np.ndarray:
    out = np.array(values, dtype=np.float64)
    allreduce_sum(comm, out)
    return out


def _total(values: np.ndarray, weights: np.ndarray | None) -> float:
    """The sum of ``values``, each times its row's weight where there are weights."""
    return values.sum() if weights is None else weights @ values


def _squares(r: np.ndarray, weights: np.ndarray | None) -> float:
    """The sum of the squares of ``r``, each times its row's weight where there are weights."""
    return r @ r if weights is None else weights @ (r * r)


def _share_explained(residual: float, null: float) -> float:
    """``1 - residual / null`` (R², D²); for a null of 0 or none (constant targets),
    scikit-learn's convention: 1 if the residual is 0 too, else 0."""
    if null > 0:
        return float(1.0 - residual / null)
    return 1.0 if residual == 0 else 0.0


def regression(comm, y: np.ndarray, predicted: np.ndarray, weights=None) -> dict:
    """RMSE, MAE and R² of ``predicted`` against ``y``, with row ``weights`` if given (as
    scikit-learn's ``sample_weight``). R² uses the global mean of y (a second reduction)
    instead of the cancellation-prone sum of squares. Collective: yes.
    """
    r = predicted - y
    total = len(y) if weights is None else weights.sum()
    rows, total, y_sum, sse, sae = _sums(
        comm, len(y), total, _total(y, weights), _squares(r, weights), _total(np.abs(r), weights)
    )
    mean = y_sum / total
    (sst,) = _sums(comm, _total(np.square(y - mean), weights))
    return {
        "rows": int(rows),
        "rmse": float(np.sqrt(sse / total)),
        "mae": float(sae / total),
        "r2": _share_explained(sse, sst),
    }


def unit_deviance(y: np.ndarray, log_mu, power: float) -> np.ndarray:
    """Each row's Tweedie deviance of the mean ``exp(log_mu)`` from ``y``, as
    scikit-learn's ``mean_tweedie_deviance`` (power 1: Poisson, 2: Gamma), from the log of
    the mean, so a log-link model's predictor is used as it is. Collective: no."""
    from scipy.special import xlogy  # evaluation only: not on training's path

    log_mu = np.broadcast_to(log_mu, np.shape(y))
    with np.errstate(over="ignore"):  # a mean beyond float64: inf deviance
        if power == 1.0:
            return 2.0 * (xlogy(y, y) - times_y(y, log_mu) - y + np.exp(log_mu))
        if power == 2.0:
            return 2.0 * (log_mu - np.log(y) + y * np.exp(-log_mu) - 1.0)
        p = power
        return 2.0 * (
            np.maximum(y, 0.0) ** (2 - p) / ((1 - p) * (2 - p))
            - times_y(y, np.exp((1 - p) * log_mu)) / (1 - p)
            + np.exp((2 - p) * log_mu) / (2 - p)
        )


def deviance(comm, y: np.ndarray, z: np.ndarray, power: float, weights=None) -> dict:
    """Mean Tweedie deviance and D² (scikit-learn's ``d2_tweedie_score``: the share of
    the deviance of the constant mean of y that the model explains) of a log-link model
    with predictors ``z``, and the MAE and RMSE of its mean ``exp(z)``, with row
    ``weights`` if given. The mean of y takes a second reduction, as R² does.
    Collective: yes."""
    with np.errstate(over="ignore"):
        r = np.exp(z) - y
    total = len(y) if weights is None else weights.sum()
    rows, total, y_sum, dev, sse, sae = _sums(
        comm, len(y), total, _total(y, weights), _total(unit_deviance(y, z, power), weights),
        _squares(r, weights), _total(np.abs(r), weights),
    )  # fmt: skip
    mean = y_sum / total
    null = _total(unit_deviance(y, np.log(mean), power), weights) if mean > 0 else np.nan
    (null,) = _sums(comm, null)
    return {
        "rows": int(rows),
        "deviance": float(dev / total),
        "d2": _share_explained(dev, null),
        "mae": float(sae / total),
        "rmse": float(np.sqrt(sse / total)),
    }


def _divide(a: float, b: float) -> float:
    """a / b, or 0 when b is 0 (scikit-learn's ``zero_division=0``)."""
    return float(a / b) if b else 0.0


def binary(comm, y: np.ndarray, z: np.ndarray, *, auc: bool = True, margin: bool = False) -> dict:
    """Metrics of a logistic model with decision values ``z`` (log-odds) on labels 0/1,
    or with ``margin=True`` of a linear SVM (``z`` its margins).

    The predicted class is 1 where z > 0 (probability above 1/2). Log-loss is computed
    from z directly, exactly, with no clipping of probabilities; an SVM has the hinge
    loss ``max(0, 1 - t z)`` (t = 2y - 1, scikit-learn's ``hinge_loss``) instead. ROC AUC is exact
    (:func:`roc_auc`); ``roc_auc_bound`` is its remaining uncertainty, 0 unless the scores
    could not be separated; ``auc=False`` leaves it out (its rounds cost the most).
    Collective: yes.
    """
    positive = y == 1
    predicted = z > 0
    if margin:
        loss_name, losses = "hinge_loss", np.maximum(0.0, 1.0 - (2.0 * y - 1.0) * z)
    else:
        loss_name, losses = "log_loss", np.logaddexp(0.0, z) - y * z
    tp, fp, fn, tn, loss_sum = _sums(
        comm,
        np.count_nonzero(positive & predicted),
        np.count_nonzero(~positive & predicted),
        np.count_nonzero(positive & ~predicted),
        np.count_nonzero(~positive & ~predicted),
        losses.sum(),
    )
    n = tp + fp + fn + tn
    auc, bound = roc_auc(comm, z, positive) if auc else (float("nan"), float("nan"))
    return {
        "rows": int(n),
        loss_name: float(loss_sum / n),
        "accuracy": float((tp + tn) / n),
        "precision": _divide(tp, tp + fp),
        "recall": _divide(tp, tp + fn),
        "f1": _divide(2 * tp, 2 * tp + fp + fn),
        "roc_auc": auc,
        "roc_auc_bound": bound,
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],  # rows: true 0, 1
    }


def multiclass(comm, y: np.ndarray, Z: np.ndarray) -> dict:
    """Accuracy, log-loss and confusion matrix of a softmax model with decision values
    ``Z`` (rows, K) on labels 0 .. K-1. Collective: yes."""
    from scipy.special import logsumexp  # evaluation only: not on training's path

    k = Z.shape[1]
    labels = y.astype(np.int64)
    log_loss = logsumexp(Z, axis=1) - np.take_along_axis(Z, labels[:, None], 1)[:, 0]
    confusion = np.bincount(labels * k + Z.argmax(axis=1), minlength=k * k).astype(np.float64)
    sums = np.append(confusion, log_loss.sum())
    allreduce_sum(comm, sums)
    confusion = sums[:-1].reshape(k, k)
    n = confusion.sum()
    return {
        "rows": int(n),
        "log_loss": float(sums[-1] / n),
        "accuracy": float(np.trace(confusion) / n),
        "confusion_matrix": confusion.astype(np.int64).tolist(),  # rows: true class
    }


def roc_auc(
    comm, scores: np.ndarray, positive: np.ndarray, *, cells: int = 2**16, rounds: int = 64
) -> tuple[float, float]:
    """Exact ROC AUC of scores spread over ranks, without gathering or sorting them.

    AUC = (pairs (positive, negative) with the positive scored higher + half the ties)
    / (positives x negatives). The score range is cut into equal cells; one reduction of
    per-cell counts, minima and maxima settles every pair in different cells, and every
    cell whose positives all lie above (or below) its negatives, or whose scores are all
    equal. The few unsettled cells are cut again, over their own range, until none is
    left: typically 2 or 3 rounds. Returns (auc, bound); the bound is 0 unless
    ``rounds`` ran out, in which case unsettled pairs count as half and the bound is
    their share. NaN (and bound 0) when only one class is present. Collective: yes.
    """
    n_pos, n_neg = _sums(comm, np.count_nonzero(positive), np.count_nonzero(~positive))
    if n_pos == 0 or n_neg == 0:
        return float("nan"), 0.0
    # Intervals to cut, identical on every rank: [low, high]; scores know their interval.
    low, high = _global_range(comm, scores)
    low, high = np.array([low]), np.array([high])
    owner = np.zeros(len(scores), dtype=np.int64)
    wins2 = 0  # twice the settled winning pairs (ties count 1), as an exact integer
    for _ in range(rounds):
        per = max(2, cells // len(low))
        width = high - low
        scale = np.divide(per, width, out=np.zeros_like(width), where=width > 0)
        sub = np.clip(((scores - low[owner]) * scale[owner]).astype(np.int64), 0, per - 1)
        cell = owner * per + sub
        counts, extremes = _cell_stats(comm, cell, scores, positive, len(low) * per)
        pos, neg = counts.reshape(2, len(low), per)
        # Positives beat the negatives in lower cells of the same interval.
        below = np.cumsum(neg, axis=1) - neg
        wins2 += 2 * int((pos * below).sum())
        pos, neg = pos.ravel(), neg.ravel()
        min_pos, max_pos, min_neg, max_neg = extremes
        both = (pos > 0) & (neg > 0)
        above = both & (max_neg < min_pos)
        tied = both & (min_pos == max_pos) & (min_neg == max_neg) & (min_pos == min_neg)
        unsettled = both & ~above & ~tied & ~(max_pos < min_neg)
        wins2 += 2 * int((pos[above] * neg[above]).sum()) + int((pos[tied] * neg[tied]).sum())
        if not unsettled.any():
            return wins2 / (2 * n_pos * n_neg), 0.0
        # Next round: only the scores in unsettled cells, each cell a new interval.
        index = np.full(len(pos), -1, dtype=np.int64)
        index[unsettled] = np.arange(np.count_nonzero(unsettled))
        keep = index[cell] >= 0
        scores, positive, owner = scores[keep], positive[keep], index[cell[keep]]
        low = np.minimum(min_pos, min_neg)[unsettled]
        high = np.maximum(max_pos, max_neg)[unsettled]
        pairs_left = (pos[unsettled] * neg[unsettled]).sum()
    return (wins2 + pairs_left) / (2 * n_pos * n_neg), float(pairs_left / (2 * n_pos * n_neg))


def _global_range(comm, values: np.ndarray) -> tuple[float, float]:
    local = (values.min(), values.max()) if len(values) else (np.inf, -np.inf)
    low, high = min_max_over_ranks(comm, [local[0]], [local[1]])
    return low[0], high[0]


def _cell_stats(comm, cell, scores, positive, n_cells):
    """Per-cell counts of positives and negatives (2, n_cells), and the minima and maxima
    of each class's scores (4, n_cells), over all ranks: one sum and one max reduction."""
    counts = np.concatenate(
        [
            np.bincount(cell[positive], minlength=n_cells),
            np.bincount(cell[~positive], minlength=n_cells),
        ]
    ).astype(np.float64)  # exact below 2**53 rows
    allreduce_sum(comm, counts)
    low = np.full((2, n_cells), np.inf)  # per class: positives, negatives
    high = np.full((2, n_cells), -np.inf)
    for row, mask in enumerate((positive, ~positive)):
        np.minimum.at(low[row], cell[mask], scores[mask])
        np.maximum.at(high[row], cell[mask], scores[mask])
    low, high = min_max_over_ranks(comm, low, high)
    return counts.astype(np.int64), (low[0], high[0], low[1], high[1])
