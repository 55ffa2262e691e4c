"""A trained linear model: prediction, and its HDF5 file (written atomically)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
from scipy.special import expit

from .errors import MpigdError
from .files import atomic_path, read_attrs

KINDS = ("linear", "logistic")


@dataclass(frozen=True)
class LinearModel:
    """Coefficients of a linear or logistic regression, and how they were trained.

    Parameters
    ----------
    kind : {"linear", "logistic"}
    coef : ndarray, shape (n,)
    intercept : float
    info : dict
        Training record (options, iterations, timings, data); stored as HDF5 attributes.
    history : ndarray, shape (iterations + 1,), optional
        Loss after each iteration, starting at the initial point.
    """

    kind: str
    coef: np.ndarray
    intercept: float
    info: dict[str, Any] = field(default_factory=dict)
    history: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``X @ coef + intercept``; X of shape (k, n) -> (k,)."""
        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1 | x) for a logistic model, shape (k,)."""
        if self.kind != "logistic":
            raise ValueError("predict_proba needs a logistic model")
        return expit(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted values (linear) or labels in {0, 1} (logistic), shape (k,)."""
        z = self.decision_function(X)
        return (z > 0).astype(np.int64) if self.kind == "logistic" else z

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` atomically. Collective: no (call on one rank)."""
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f["coef"] = self.coef
            f["intercept"] = self.intercept
            if self.history is not None:
                f["loss_history"] = self.history
            f.attrs["model"] = self.kind
            for key, value in self.info.items():
                f.attrs[key] = value


def load_model(path: str | os.PathLike) -> LinearModel:
    """Read a model written by :meth:`LinearModel.save`. Collective: no."""
    try:
        with h5py.File(path, "r") as f:
            attrs = read_attrs(f)
            coef = f["coef"][()]
            intercept = float(f["intercept"][()])
            history = f["loss_history"][()] if "loss_history" in f else None
    except (OSError, KeyError) as exc:
        raise MpigdError(f"cannot read model file {path}: {exc}") from exc
    kind = attrs.pop("model", None)
    if kind not in KINDS:
        raise MpigdError(f"{path} is not an mpigd model file (model attribute: {kind!r})")
    return LinearModel(kind, coef, intercept, attrs, history)
