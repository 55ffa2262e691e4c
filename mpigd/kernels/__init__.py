"""The local passes: what one rank computes over its own rows, with no communication.

:mod:`~mpigd.kernels.losses` holds the pointwise losses, :mod:`~mpigd.kernels.theta` the
parameter layout, and the row sums come in one module per layout of X:
:mod:`~mpigd.kernels.dense` (row blocks of a dense array) and
:mod:`~mpigd.kernels.sparse` (CSR), each with the compiled fused sweep of
:mod:`~mpigd.kernels.compiled` where it applies. :func:`select` chooses the kernels for an
X and a loss once, so that the objective asks "sums over my rows" whatever their layout;
:func:`for_rows` returns the layout's module, which chooses on every call.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .choice import Kernels
    from .losses import PointwiseLoss


def is_sparse(X) -> bool:
    """Whether X is a scipy.sparse matrix, without importing scipy: if scipy.sparse was
    never imported, nothing can be one (dense runs never load it). Collective: no."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(X)


def select(X, loss: PointwiseLoss) -> Kernels:
    """The kernels for the sums of ``loss`` over rows laid out as ``X``, chosen once: the
    compiled fused sweep where it applies (C-ordered float32/float64 rows not wider than
    :data:`~mpigd.kernels.compiled.DENSE_MAX_FEATURES`, softmax of at most
    :data:`~mpigd.kernels.compiled.DENSE_MAX_CLASSES` classes on dense rows, or CSR; built
    and not turned off by ``MPIGD_KERNELS=numpy``), else the NumPy/scipy.sparse reference.
    The result has the methods and signatures of the module :func:`for_rows` returns,
    ``.name`` (``"compiled"`` or ``"numpy"``) and ``.reason`` (why NumPy, or None).
    Looks at X's layout and shape, never at its values. Collective: no."""
    from . import compiled
    from .choice import Kernels

    if is_sparse(X):
        from . import sparse as layout

        sweep = compiled.csr_sweep
    else:
        from . import dense as layout

        sweep = compiled.dense_sweep
    reason = compiled.unsuitable(X, loss)
    return Kernels(layout, sweep if reason is None else None, reason)


def for_rows(X) -> ModuleType:
    """The kernel module for this layout of X: ``local_sums``, ``local_hessian``,
    ``local_curvature``, ``curvature_product`` and ``local_hessp`` with the same
    signatures, choosing compiled or NumPy on every call (:func:`select` chooses once).
    Collective: no."""
    if is_sparse(X):
        from . import sparse

        return sparse
    from . import dense

    return dense
