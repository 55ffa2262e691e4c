"""The local passes: what one rank computes over its own rows, with no communication.

:mod:`~mpigd.kernels.losses` holds the pointwise losses, :mod:`~mpigd.kernels.theta` the
parameter layout, and the row sums come in one module per layout of X:
:mod:`~mpigd.kernels.dense` (row blocks of a dense array) and
:mod:`~mpigd.kernels.sparse` (CSR). :func:`for_rows` picks the one for an X, so that the
objective asks "sums over my rows" whatever their layout.
"""

from __future__ import annotations

import sys
from types import ModuleType


def is_sparse(X) -> bool:
    """Whether X is a scipy.sparse matrix, without importing scipy: if scipy.sparse was
    never imported, nothing can be one (dense runs never load it). Collective: no."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(X)


def for_rows(X) -> ModuleType:
    """The kernel module for this layout of X: ``local_sums``, ``local_hessian``,
    ``local_curvature``, ``curvature_product`` and ``local_hessp`` with the same
    signatures. Collective: no."""
    if is_sparse(X):
        from . import sparse

        return sparse
    from . import dense

    return dense
