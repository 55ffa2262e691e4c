"""A cross-validation's penalties and how one is chosen: the path (log-spaced, or the
values given), the validation metrics of each model kind, and the choice by the best
mean or the one-standard-error rule (as glmnet's ``cv.glmnet``). No communication."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MpigdError
from ..parallel import warn0
from ..train.options import option

#: Validation metrics, and whether larger is better.
METRICS = {
    "log_loss": False,
    "accuracy": True,
    "roc_auc": True,
    "rmse": False,
    "mae": False,
    "r2": True,
    "deviance": False,
    "d2": True,
    "hinge_loss": False,
}
MODEL_METRICS = {
    "linear": ("rmse", "r2", "mae"),
    "logistic": ("log_loss", "accuracy", "roc_auc"),
    "softmax": ("log_loss", "accuracy"),
    "poisson": ("deviance", "d2", "mae", "rmse"),
    "gamma": ("deviance", "d2", "mae", "rmse"),
    "tweedie": ("deviance", "d2", "mae", "rmse"),
    "huber": ("mae", "rmse", "r2"),
    "svm": ("hinge_loss", "accuracy", "roc_auc"),
}
RULES = ("min", "1se")
#: The most penalties a path may hold (each costs a pass or more per fold model).
MAX_PATH = 10_000


class PathEndWarning(UserWarning):
    """The chosen penalty is an end of the path: the best may lie beyond it."""


def penalty_path(spec: str | Sequence[float], name: str = "l2_path") -> np.ndarray:
    """The penalties of a path, largest first: ``"HIGH:LOW:COUNT"`` (COUNT log-spaced
    values from HIGH down to LOW) or the values themselves; ``name`` is the option that
    gave it, for the messages. Collective: no."""
    where = f"{option(name)}: "
    if isinstance(spec, str):
        parts = spec.split(":")
        try:
            high, low, count = float(parts[0]), float(parts[1]), int(parts[2])
            if len(parts) != 3:
                raise ValueError
        except (ValueError, IndexError):
            raise MpigdError(f"{where}a penalty path is HIGH:LOW:COUNT, got {spec!r}") from None
        if count < 1:
            raise MpigdError(f"{where}the penalty path {spec!r} is empty: COUNT must be >= 1")
        if count > MAX_PATH:
            raise MpigdError(
                f"{where}the penalty path {spec!r} is too long: COUNT must be <= {MAX_PATH}"
            )
        if min(high, low) < 0:
            raise MpigdError(
                f"{where}the penalty path {spec!r} holds a negative penalty: a penalty "
                "cannot be negative, and a log-spaced path needs HIGH >= LOW > 0"
            )
        if min(high, low) == 0:
            raise MpigdError(
                f"{where}the penalty path {spec!r} reaches 0: a log-spaced path needs "
                "HIGH >= LOW > 0"
            )
        if not (np.isfinite(high) and high >= low):
            raise MpigdError(f"{where}the penalty path {spec!r} needs HIGH >= LOW > 0, finite")
        return np.geomspace(high, low, count) if count > 1 else np.array([high])
    values = np.asarray(spec, dtype=np.float64).ravel()
    if len(values) == 0:
        raise MpigdError(f"{where}the penalty path is empty")
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise MpigdError(f"{where}penalties must be finite numbers >= 0")
    return np.unique(values)[::-1].copy()


def choose(val: np.ndarray, larger_is_better: bool) -> tuple[int, int]:
    """Indices of the best penalty by mean validation metric, and of the largest penalty
    whose mean lies within one standard error (std over folds / sqrt(F), as glmnet) of
    the best; the path runs from the largest penalty. Collective: no."""
    sign = -1.0 if larger_is_better else 1.0
    mean = sign * val.mean(axis=1)
    if np.isnan(mean).all():
        raise MpigdError("the validation metric is undefined (NaN) at every penalty")
    best = int(np.nanargmin(mean))
    se = val[best].std(ddof=1) / np.sqrt(val.shape[1])
    within = np.flatnonzero(mean <= mean[best] + se)
    return best, int(within[0]) if len(within) else best


def warn_at_an_end(comm, kind: str, path: np.ndarray, chosen: int) -> None:
    """Warn (rank 0) when the chosen penalty is the largest or the smallest of a path
    of several: the best may lie beyond it. Collective: no."""
    if len(path) < 2 or 0 < chosen < len(path) - 1:
        return
    end, bound, way = ("largest", "HIGH", "up") if chosen == 0 else ("smallest", "LOW", "down")
    warn0(
        comm,
        f"the chosen {kind} = {path[chosen]:.3g} is the {end} penalty of the path: the best "
        f"may lie beyond it; extend the path {way} ({bound} of --{kind}-path) and run again",
        PathEndWarning,
    )
