"""The compiled fused kernels (``_fused.c``) and when to use them.

One sweep over a block of rows computes the predictors, the pointwise loss and ``X_b^T r``
while the block is in cache (CSR rows: the predictors and losses of a span of blocks, then
its ``X_b^T r``); float32 X is read as it is, never widened into a copy. The
extension is built when mpigd is installed (a C compiler is all it needs) and is
optional: without it, or with ``MPIGD_KERNELS=numpy`` in the environment, the NumPy and
scipy.sparse kernels, which are the reference these are tested against, do the work.
``MPIGD_KERNELS=compiled`` makes a missing extension an error instead. Pure, no MPI.

:func:`unsuitable` says once, for an X and a loss, whether the compiled kernels apply
(:func:`mpigd.kernels.select` asks it); the sweeps (:func:`dense_sweep`,
:func:`csr_sweep`, :func:`fold_sweep`) then call the C code without checking anything
again: it checks every array it indexes through and refuses a mismatch with a
``ValueError``. :func:`dense_sums`, :func:`csr_sums` and :func:`fold_sums` decide on every
call and return None where NumPy should do the work (for the per-call path of
:func:`mpigd.kernels.for_rows`).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InvalidInputError, MpigdError
from ..partition import SWEEP_ROWS
from . import is_sparse
from .losses import PointwiseLoss

ABI = 7  # must match KERNEL_ABI in _fused.c: a stale build is never called
#: Where BLAS is faster than the fused sweep (benchmarks/local_pass.py and the README's
#: kernel table, this project's 2-core machine): dense rows wider than this many
#: features (gemv streams a wide row at memory speed; at 16,384 the fused sweep is 0.7x),
#: and softmax with more classes (gemm reuses each row across the classes: 1.0x at 10,
#: 0.65x at 32, against 2x at 4).
DENSE_MAX_FEATURES = 2048
DENSE_MAX_CLASSES = 8
_LOSS_CODES = {
    "linear": 0,
    "logistic": 1,
    "softmax": 2,
    "poisson": 3,
    "gamma": 4,
    "tweedie": 5,
    "huber": 6,
    "svm": 7,
}
_NO_WEIGHTS = np.empty(0)


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
        if getattr(_fused, "ABI", None) == ABI and getattr(_fused, "BLOCK", None) == SWEEP_ROWS:
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


# -- the choice ------------------------------------------------------------------------------


def unsuitable(X, loss: PointwiseLoss, *, folds: bool = False) -> str | None:
    """Why the compiled kernels should not compute the sums of ``loss`` over rows laid out
    as ``X``, or None where they should: off or not built, X neither C-ordered float32 or
    float64 rows nor CSR, a loss they do not know, or a dense shape where BLAS is faster
    (:data:`DENSE_MAX_FEATURES`, :data:`DENSE_MAX_CLASSES`). ``folds``: for the F fold
    models of :func:`fold_sweep`, which are single-output. Looks at X's layout, dtype and
    shape only, never at its values. Collective: no."""
    if _fused is None:
        return why_not
    K = loss.n_outputs
    if _LOSS_CODES.get(loss.name) is None:
        return f"the compiled kernels do not know the {loss.name!r} loss"
    if folds and K != 1:
        return f"fold models of {K} outputs ({loss.name})"
    if loss.name == "softmax" and K < 2:
        return f"softmax of {K} class"
    if is_sparse(X):
        return None if X.format == "csr" else f"X is a sparse {X.format} matrix, not CSR"
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        return f"X is not a 2-D array ({type(X).__name__} of shape {np.shape(X)})"
    if not _float_rows(X):
        order = "C-ordered" if X.flags.c_contiguous else "not C-ordered"
        return f"X is {X.dtype}, {order}: the compiled kernels read C-ordered float32/64"
    if folds:
        return None
    if X.shape[1] > DENSE_MAX_FEATURES:
        return f"{X.shape[1]} dense features > {DENSE_MAX_FEATURES}: BLAS is faster"
    if K > DENSE_MAX_CLASSES:
        return f"{K} classes > {DENSE_MAX_CLASSES} on dense rows: BLAS is faster"
    return None


def _float_rows(a) -> bool:
    return a.dtype in (np.float32, np.float64) and a.flags.c_contiguous


# -- the sweeps: no checks in Python, the C code makes them --------------------------------


def dense_sweep(
    X, y, theta, loss: PointwiseLoss, out=None, *, weights=None, need_loss=True, after=None
):
    """:func:`mpigd.kernels.dense.local_sums` in one fused sweep over C-ordered float32 or
    float64 ``X``. With ``need_loss=False`` the loss sum is 0 and its transcendental work is
    skipped. Arrays the C code cannot follow are a ``ValueError``; ``out`` must be a
    C-ordered float64 vector. ``after``: the loss sum of the rows before these, whose
    gradient sums ``out`` holds; these rows' sums are added to both, bit for bit as one
    sweep over all the rows would add them where the earlier rows are a multiple of
    :data:`~mpigd.partition.SWEEP_ROWS` (the C code's ``BLOCK``). Collective: no."""
    m, n = X.shape
    rows = (X, m, n, _float64(y), _weights(weights))
    model = (_float64(theta), *_code(loss), loss.n_outputs, need_loss)
    grad, sums = _sums_out(theta, out, after)
    return _fused.dense_sums(rows, model, sums), grad


def csr_sweep(
    X, y, theta, loss: PointwiseLoss, out=None, *, weights=None, need_loss=True, after=None
):
    """:func:`mpigd.kernels.sparse.local_sums` in one fused sweep over CSR ``X``'s ``data``
    and ``indices``, as :func:`dense_sweep`. Collective: no."""
    m, n = X.shape
    rows = (*_csr_arrays(X), m, n, _float64(y), _weights(weights))
    model = (_float64(theta), *_code(loss), loss.n_outputs, need_loss)
    grad, sums = _sums_out(theta, out, after)
    return _fused.csr_sums(rows, model, sums), grad


def _sums_out(theta, out, after) -> tuple[np.ndarray, tuple]:
    """The gradient array a sweep writes, and the C code's ``(grad, add, start)``."""
    if after is not None and out is None:
        raise ValueError("a sweep continuing earlier sums (after=...) needs their out")
    grad = np.empty(np.shape(theta)) if out is None else out
    return grad, (grad, after is not None, 0.0 if after is None else float(after))


def fold_sweep(
    X, y, Theta, loss: PointwiseLoss, fold, labels, *, weights=None, class_weights=None, into=None
):
    """:func:`mpigd.kernels.folds.fold_sums` of single-output models in one fused sweep
    (the F models side by side, as the outputs of one model) over C-ordered float rows or
    CSR ``X``. ``into``: ``(loss_sums (2F,), grad ((n + 1) F,))``, float64 vectors these
    rows' sums are added to (continued as by one sweep over all the rows, as ``after``
    in :func:`dense_sweep`); the arrays returned are then views of them. Collective: no."""
    m, n = X.shape
    _, F = np.shape(Theta)  # a ValueError unless 2-D; the C code checks p = n + 1
    theta = _float64(Theta).ravel()  # (n + 1, F) in C order: F outputs of one model
    # training, then validation losses; the gradient sums
    loss_sums, grad = (np.zeros(2 * F), np.empty(theta.shape)) if into is None else into
    folds = (
        np.ascontiguousarray(fold, dtype=np.int64),
        np.ascontiguousarray(labels, dtype=np.int64),
        _NO_WEIGHTS if class_weights is None else _float64(class_weights),
        loss_sums,
    )
    out = (grad, into is not None, 0.0)  # added to: fold sums never carry a loss sum
    model = (theta, *_code(loss), F, True)
    tail = (m, n, _float64(y), _weights(weights))
    if getattr(X, "format", None) == "csr":
        _fused.csr_sums((*_csr_arrays(X), *tail), model, out, folds)
    else:
        _fused.dense_sums((X, *tail), model, out, folds)
    return loss_sums[:F], loss_sums[F:], grad.reshape(n + 1, F)


def _csr_arrays(X) -> tuple:
    """The CSR arrays of the C kernel: data (float32/64), indices and indptr (int32, or
    int64 with int64 indptr)."""
    data = X.data if _float_rows(X.data) else X.data.astype(np.float64)
    indices, indptr = X.indices, X.indptr
    if indices.dtype != np.int32:
        indices = indices.astype(np.int64, copy=False)
    if indptr.dtype != np.int32 or indices.dtype == np.int64:
        indptr = indptr.astype(np.int64, copy=False)
    return data, np.ascontiguousarray(indices), np.ascontiguousarray(indptr)


def _code(loss: PointwiseLoss) -> tuple[int, float]:
    """The C code's loss code and parameter (tweedie's power, huber's epsilon, else 0)."""
    return _LOSS_CODES[loss.name], float(loss.parameter)


def _float64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def _weights(weights):
    return _NO_WEIGHTS if weights is None else _float64(weights)


# -- decided on every call ------------------------------------------------------------------


def _fits(m: int, n: int, y, theta, loss, out, weights) -> bool:
    """Whether the arrays have the lengths the C code will index with: anything else goes
    to the reference kernels, which raise NumPy's error (the C code, which checks every
    length and each softmax label itself, would refuse it with its own)."""
    size = (n + 1) * loss.n_outputs
    return (
        np.ndim(y) == 1
        and len(y) == m
        and np.shape(theta) == (size,)
        and (out is None or (out.shape == (size,) and _contiguous(out)))
        and (weights is None or np.shape(weights) == (m,))
    )


def _contiguous(out) -> bool:
    return out.dtype == np.float64 and out.flags.c_contiguous


def dense_sums(X, y, theta, loss: PointwiseLoss, out=None, *, weights=None, need_loss=True):
    """:func:`dense_sweep`, or None where NumPy should compute these sums (no extension, X
    not C-ordered float32/64, a shape where BLAS is faster, arrays of other lengths).
    Decided on every call; :func:`mpigd.kernels.select` decides once. Collective: no."""
    if not isinstance(X, np.ndarray) or unsuitable(X, loss) is not None:
        return None
    if not _fits(*X.shape, y, theta, loss, out, weights):
        return None
    return dense_sweep(X, y, theta, loss, out, weights=weights, need_loss=need_loss)


def csr_sums(X, y, theta, loss: PointwiseLoss, out=None, *, weights=None, need_loss=True):
    """:func:`csr_sweep`, or None where the extension is off, X is not CSR or the arrays
    have other lengths. Collective: no."""
    if getattr(X, "format", None) != "csr" or unsuitable(X, loss) is not None:
        return None
    if not _fits(*X.shape, y, theta, loss, out, weights):
        return None
    return csr_sweep(X, y, theta, loss, out, weights=weights, need_loss=need_loss)


def fold_sums(X, y, Theta, loss: PointwiseLoss, fold, labels, weights, class_weights):
    """:func:`fold_sweep`, or None where the compiled kernel does not apply (no extension,
    softmax, X not C-ordered float or CSR, arrays of other shapes). Collective: no."""
    if unsuitable(X, loss, folds=True) is not None or np.ndim(Theta) != 2:
        return None
    m, n = X.shape
    F = Theta.shape[1]
    if Theta.shape[0] != n + 1 or np.shape(fold) != (m,) or np.shape(labels) != (F,):
        return None
    if np.shape(y) != (m,) or (weights is not None and np.shape(weights) != (m,)):
        return None
    if class_weights is not None and np.shape(class_weights) != (F, 2):
        return None
    return fold_sweep(X, y, Theta, loss, fold, labels, weights=weights, class_weights=class_weights)
