"""A trained linear model: prediction, and its HDF5 file (written atomically)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from .errors import MpigdError
from .io.hdf5 import get_dataset, open_input
from .io.outputs import read_attrs, writing
from .kernels import is_sparse
from .kernels.dense import row_blocks
from .kernels.losses import BINARY, DEFAULT_POWER, LOG_LINK, MODELS, deviance_power
from .kernels.theta import unpack_theta


@dataclass(frozen=True)
class LinearModel:
    """Coefficients of a linear model of any kind, and how it was trained.

    Parameters
    ----------
    kind : str
        One of :data:`mpigd.kernels.losses.MODELS`.
    coef : ndarray, shape (n,), or (n, K) for softmax
        On the raw feature scale, also after training with standardisation.
    intercept : float, or ndarray (K,) for softmax
    info : dict
        Training record (options, iterations, timings, data); stored as HDF5 attributes.
    arrays : dict of ndarray
        Stored as datasets: ``loss_history`` (iterations + 1,) and, after standardised
        training, ``feature_mean`` and ``feature_std`` (n,).
    """

    kind: str
    coef: np.ndarray
    intercept: float | np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in MODELS:
            raise ValueError(f"kind must be one of {MODELS}, got {self.kind!r}")

    @classmethod
    def from_theta(cls, kind, theta, n_features, n_outputs, info=None, arrays=None):
        """The model with flat raw-scale parameters ``theta`` ((n + 1) K,)."""
        W, b = unpack_theta(theta, n_features, n_outputs)
        intercept = float(b) if n_outputs == 1 else np.array(b)
        return cls(kind, np.array(W), intercept, info or {}, arrays or {})

    @property
    def power(self) -> float | None:
        """The deviance power of a log-link model (poisson 1, gamma 2, tweedie its own, as
        trained), None for the others."""
        return deviance_power(self.kind, float(self.info.get("power", DEFAULT_POWER)))

    @property
    def history(self) -> np.ndarray | None:
        """Loss after each iteration, starting at the initial point."""
        return self.arrays.get("loss_history")

    def decision_function(self, X) -> np.ndarray:
        """``X @ coef + intercept``; X (an array or a scipy sparse matrix) of shape (k, n)
        -> (k,) or (k, K).

        Each row's value is summed in a fixed order that does not depend on the other
        rows passed with it (a matrix-vector product may change its summation order with
        the block's size or alignment; a CSR product sums each row in its stored order),
        so the rows of a file get the same bits whatever the number of ranks that share
        them out.
        """
        W = self.coef.reshape(len(self.coef), -1)
        if is_sparse(X):
            from .io.memory import checked_sparse  # its indices are followed: checked first

            out = np.asarray(checked_sparse(X) @ W, dtype=np.float64)
        else:
            X = np.asarray(X)
            out = np.empty((len(X), W.shape[1]))
            for rows, block in row_blocks(X):
                for k in range(W.shape[1]):
                    out[rows, k] = np.sum(block * W[:, k], axis=1)
        out += self.intercept
        return out.reshape(X.shape[0], *self.coef.shape[1:])

    def outputs(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions from decision values ``z``: values (linear, huber), means
        ``exp(z)`` (the log-link models: poisson, gamma, tweedie) or class labels (class 1
        where z > 0; softmax's largest; the label values where the model keeps
        ``arrays["classes"]``), and the probabilities of :meth:`predict_proba` (logistic
        and softmax; None for the others)."""
        from scipy.special import expit, softmax  # prediction only: not on training's path

        classes = self.arrays.get("classes")  # label values, from labels="auto"
        if self.kind in BINARY:
            index = (z > 0).astype(np.int64)
            labels = index if classes is None else classes[index]
            return labels, (expit(z) if self.kind == "logistic" else None)
        if self.kind == "softmax":
            index = z.argmax(axis=1)
            return (index if classes is None else classes[index]), softmax(z, axis=1)
        if self.kind in LOG_LINK:
            with np.errstate(over="ignore"):  # beyond float64: inf
                return np.exp(z), None
        return z, None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(y = 1 | x), shape (k,), for logistic; class probabilities (k, K) for softmax."""
        if self.kind not in ("logistic", "softmax"):
            raise ValueError(f"predict_proba needs a logistic or softmax model, not {self.kind}")
        return self.outputs(self.decision_function(X))[1]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted values (linear, huber), means (poisson, gamma, tweedie) or class
        labels (logistic, softmax, svm), shape (k,)."""
        return self.outputs(self.decision_function(X))[0]

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` atomically. Collective: no (call on one rank).

        Raises :class:`MpigdError` when it cannot be written."""
        with writing(path) as tmp, h5py.File(tmp, "w") as f:
            f["coef"] = self.coef
            f["intercept"] = self.intercept
            for key, value in self.arrays.items():
                f[key] = value
            f.attrs["model"] = self.kind
            f.attrs.update(self.info)


def load_model(path: str | os.PathLike) -> LinearModel:
    """Read a model written by :meth:`LinearModel.save`. Collective: no."""
    with open_input(path, "model file") as f:
        attrs = read_attrs(f)
        kind = attrs.pop("model", None)
        if kind not in MODELS or "coef" not in f or "intercept" not in f:
            raise MpigdError(
                f"cannot read model file {path}: it is not an mpigd model file (model "
                f"attribute: {kind!r})"
            )
        coef = get_dataset(f, "coef")[()]
        intercept = get_dataset(f, "intercept")[()]
        arrays = {key: f[key][()] for key in f if key not in ("coef", "intercept")}
    problem = _model_problem(kind, coef, intercept)
    if problem:
        raise MpigdError(f"cannot use model file {path}: {problem}")
    intercept = float(intercept) if np.ndim(intercept) == 0 else intercept
    return LinearModel(kind, coef, intercept, attrs, arrays)


def _model_problem(kind: str, coef: np.ndarray, intercept: np.ndarray) -> str | None:
    """Why these arrays cannot be a ``kind`` model, or None."""
    multi = kind == "softmax"
    shape_ok = coef.ndim == 2 and coef.shape[1] >= 2 if multi else coef.ndim == 1
    if not shape_ok or coef.shape[0] == 0:
        return (
            f"a {kind} model needs coef of shape {'(n, K)' if multi else '(n,)'}, not {coef.shape}"
        )
    expected = (coef.shape[1],) if multi else ()
    if np.shape(intercept) != expected:
        return (
            f"its intercept has shape {np.shape(intercept)}, but coef {coef.shape} needs {expected}"
        )
    if coef.dtype.kind not in "iuf" or np.asarray(intercept).dtype.kind not in "iuf":
        return "its coefficients are not real numbers"
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        return "its coefficients hold NaN or infinite values (a diverged run?)"
    return None
