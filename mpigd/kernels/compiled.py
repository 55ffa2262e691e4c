"""The compiled fused kernels (``_fused.c``) and when to use them.

One sweep over a block of rows computes the predictors, the pointwise loss and ``X_b^T r``
while the block is in cache; float32 X is read as it is, never widened into a copy. The
extension is built when mpigd is installed (a C compiler is all it needs) and is
optional: without it, or with ``MPIGD_KERNELS=numpy`` in the environment, the NumPy and
scipy.sparse kernels, which are the reference these are tested against, do the work.
``MPIGD_KERNELS=compiled`` makes a missing extension an error instead. Pure, no MPI.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InvalidInputError, MpigdError
from .losses import PointwiseLoss

ABI = 4  # must match KERNEL_ABI in _fused.c: a stale build is never called
#: Where BLAS is faster than the fused sweep (benchmarks/local_pass.py and the README's
#: kernel table, this project's 2-core machine): dense rows wider than this many
#: features (gemv streams a wide row at memory speed; at 16,384 the fused sweep is 0.7x),
#: and softmax with more classes (gemm reuses each row across the classes: 1.0x at 10,
#: 0.65x at 32, against 2x at 4).
DENSE_MAX_FEATURES = 2048
DENSE_MAX_CLASSES = 8
_LOSS_CODES = {"linear": 0, "logistic": 1, "softmax": 2}
_NO_WEIGHTS = np.empty(0)
_NO_FOLDS = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), _NO_WEIGHTS, np.zeros(1))


def _load():
    """The extension module, or None (and why) when it is off or cannot be used; an
    :class:`~mpigd.errors.InvalidInputError` (a ``ValueError``, and one line from the
    command line) for a value of ``MPIGD_KERNELS`` that is none of the three."""
    choice = os.environ.get("MPIGD_KERNELS", "auto").strip().lower() or "auto"
    if choice not in ("auto", "compiled", "numpy"):
        raise InvalidInputError(f"MPIGD_KERNELS={choice!r}: choose auto, compiled or numpy")
    if choice == "numpy":
        return None, "MPIGD_KERNELS=numpy"
    try:
        from . import _fused
    except ImportError as error:
        reason = f"the compiled kernels are not built ({error}); reinstall mpigd with a C compiler"
    else:
        if getattr(_fused, "ABI", None) == ABI:
            return _fused, None
        reason = "the compiled kernels are from another version; reinstall mpigd"
    if choice == "compiled":
        raise KernelsUnavailable(f"MPIGD_KERNELS=compiled, but {reason}")
    return None, reason


class KernelsUnavailable(MpigdError, ImportError):
    """``MPIGD_KERNELS=compiled`` where the extension cannot be used: an ``ImportError``
    for Python callers, one line from the command line."""


_fused, why_not = _load()


def name() -> str:
    """Which kernels run: ``"compiled"`` or ``"numpy"``. Collective: no."""
    return "numpy" if _fused is None else "compiled"


def _float_rows(a) -> bool:
    return a.dtype in (np.float32, np.float64) and a.flags.c_contiguous


def _weights(weights):
    return _NO_WEIGHTS if weights is None else np.ascontiguousarray(weights, dtype=np.float64)


def _grad(theta, out):
    return np.empty(theta.shape) if out is None else out


def _fits(m: int, n: int, y, theta, loss, out, weights) -> bool:
    """Whether the arrays have the lengths the C code will index with: anything else goes
    to the reference kernels, which raise NumPy's error (the C code, which checks every
    length and each softmax label itself, would refuse it with its own)."""
    size = (n + 1) * loss.n_outputs
    return (
        (loss.name != "softmax" or loss.n_outputs >= 2)
        and np.ndim(y) == 1
        and len(y) == m
        and np.shape(theta) == (size,)
        and (out is None or out.shape == (size,))
        and (weights is None or np.shape(weights) == (m,))
    )


def dense_sums(X, y, theta, loss: PointwiseLoss, out=None, *, weights=None, need_loss=True):
    """:func:`mpigd.kernels.dense.local_sums` in one fused sweep, or None when these
    rows are not for the compiled kernel (no extension, X not C-ordered float32/64, or
    a shape where BLAS is faster: :data:`DENSE_MAX_FEATURES`, :data:`DENSE_MAX_CLASSES`).
    With ``need_loss=False`` the loss sum is 0 and its transcendental work is skipped.
    Collective: no."""
    if _fused is None or X.ndim != 2 or not _float_rows(X) or not _contiguous(out):
        return None
    if X.shape[1] > DENSE_MAX_FEATURES or loss.n_outputs > DENSE_MAX_CLASSES:
        return None
    if not _fits(*X.shape, y, theta, loss, out, weights):
        return None
    grad = _grad(theta, out)
    total = _fused.dense_sums(
        X, X.dtype == np.float32, X.shape[0], X.shape[1], _float64(y), _float64(theta),
        _weights(weights), _LOSS_CODES[loss.name], loss.n_outputs, grad, need_loss, *_NO_FOLDS,
    )  # fmt: skip
    return total, grad


def csr_sums(X, y, theta, loss: PointwiseLoss, out=None, *, weights=None, need_loss=True):
    """:func:`mpigd.kernels.sparse.local_sums` in one fused sweep over ``data`` and
    ``indices``, or None when the extension is off or X is not CSR. Collective: no."""
    if _fused is None or X.format != "csr" or not _contiguous(out):
        return None
    if not _fits(*X.shape, y, theta, loss, out, weights):
        return None
    grad = _grad(theta, out)
    total = _fused.csr_sums(
        *_csr_arrays(X), X.shape[0], X.shape[1], _float64(y), _float64(theta),
        _weights(weights), _LOSS_CODES[loss.name], loss.n_outputs, grad, need_loss, *_NO_FOLDS,
    )  # fmt: skip
    return total, grad


def _csr_arrays(X) -> tuple:
    """The CSR arguments of the C kernel: data (float32/64), indices and indptr (int32, or
    int64 with int64 indptr), each with its type flag."""
    data = X.data if _float_rows(X.data) else X.data.astype(np.float64)
    indices, indptr = X.indices, X.indptr
    if indices.dtype != np.int32:
        indices = indices.astype(np.int64, copy=False)
    if indptr.dtype != np.int32 or indices.dtype == np.int64:
        indptr = indptr.astype(np.int64, copy=False)
    return (
        data, data.dtype == np.float32,
        np.ascontiguousarray(indices), indices.dtype == np.int64,
        np.ascontiguousarray(indptr), indptr.dtype == np.int64,
    )  # fmt: skip


def _float64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def _contiguous(out) -> bool:
    return out is None or (out.dtype == np.float64 and out.flags.c_contiguous)


def fold_sums(X, y, Theta, loss: PointwiseLoss, fold, labels, weights, class_weights):
    """:func:`mpigd.kernels.folds.fold_sums` of single-output models in one fused sweep
    (the F models side by side, as the outputs of one model), or None where the compiled
    kernel does not apply (no extension, softmax, X not C-ordered float or CSR).
    Collective: no."""
    if _fused is None or loss.n_outputs != 1 or Theta.ndim != 2:
        return None
    m, n = X.shape
    F = Theta.shape[1]
    if Theta.shape[0] != n + 1 or np.shape(fold) != (m,) or np.shape(labels) != (F,):
        return None
    if np.shape(y) != (m,) or (weights is not None and np.shape(weights) != (m,)):
        return None  # the C code reads y and weights for every row: NumPy raises instead
    if class_weights is not None and np.shape(class_weights) != (F, 2):
        return None
    if m == 0:  # a rank without rows: its sums are zeros (the C code reads an empty fold
        return np.zeros(F), np.zeros(F), np.zeros((n + 1, F))  # buffer as "no folds")
    loss_sums = np.zeros(2 * F)  # training, then validation losses
    folds = (
        np.ascontiguousarray(fold, dtype=np.int64),
        np.ascontiguousarray(labels, dtype=np.int64),
        _NO_WEIGHTS if class_weights is None else _float64(class_weights),
        loss_sums,
    )
    theta = _float64(Theta).ravel()  # (n + 1, F) in C order: F outputs of one model
    grad = np.empty(theta.shape)
    if getattr(X, "format", None) == "csr":
        head = _csr_arrays(X)
    elif X.ndim == 2 and _float_rows(X):
        head = (X, X.dtype == np.float32)
    else:
        return None
    kernel = _fused.csr_sums if len(head) > 2 else _fused.dense_sums
    kernel(
        *head, m, n, _float64(y), theta, _weights(weights), _LOSS_CODES[loss.name], F, grad,
        True, *folds,
    )  # fmt: skip
    return loss_sums[:F], loss_sums[F:], grad.reshape(n + 1, F)
