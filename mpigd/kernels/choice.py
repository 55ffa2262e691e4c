"""The local-sum kernels of one objective, compiled or NumPy, chosen once.

:func:`mpigd.kernels.select` looks at X's layout, dtype and shape, the loss and
``MPIGD_KERNELS`` once, when an objective is built, and returns a :class:`Kernels` whose
methods then compute every evaluation's sums without asking again. Pure, no MPI.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np

from .losses import PointwiseLoss, SquaredLoss


class Kernels:
    """The local sums over rows laid out as one X, by the kernels chosen for them: the
    methods and signatures of :mod:`mpigd.kernels.dense` and :mod:`mpigd.kernels.sparse`.

    The loss and gradient sums (and the curvature products, which are gradient sums of a
    weighted squared loss) come from the compiled fused sweep or from the layout's NumPy
    reference; the curvature itself (:meth:`local_hessian`, :meth:`local_curvature`) is
    always the layout's NumPy code. Rows with another layout than the X they were chosen
    for are not rerouted: the compiled kernels refuse arrays they cannot follow with a
    ``ValueError``.

    Attributes
    ----------
    name : str
        ``"compiled"`` or ``"numpy"``.
    reason : str or None
        Why the NumPy kernels were chosen; None for the compiled ones.
    layout : module
        :mod:`~mpigd.kernels.dense` or :mod:`~mpigd.kernels.sparse`.
    """

    def __init__(
        self, layout: ModuleType, sweep: Callable | None = None, reason: str | None = None
    ):
        self.layout = layout
        self.name = "numpy" if sweep is None else "compiled"
        self.reason = reason
        self._sweep = sweep

    def __repr__(self) -> str:
        layout = self.layout.__name__.rsplit(".", 1)[-1]
        why = "" if self.reason is None else f": {self.reason}"
        return f"<{self.name} kernels for {layout} rows{why}>"

    def local_sums(
        self,
        X,
        y,
        theta,
        loss: PointwiseLoss,
        out=None,
        *,
        weights=None,
        need_loss=True,
        after=None,
    ) -> tuple[float, np.ndarray]:
        """Unscaled loss and gradient sums over the rows of ``X``, as
        :func:`mpigd.kernels.dense.reference_sums`; ``need_loss=False`` lets the compiled
        sweep skip the loss (its sum is then 0). ``after``: the loss sum of earlier rows,
        whose gradient sums ``out`` holds; these rows' sums are added to both (the
        compiled sweep continues the earlier sums exactly as one sweep over all the rows
        would where the earlier rows are a multiple of
        :data:`~mpigd.partition.SWEEP_ROWS`; the NumPy kernels add this
        sweep's sums to them). Collective: no."""  # fmt: skip
        if self._sweep is not None:
            return self._sweep(
                X, y, theta, loss, out, weights=weights, need_loss=need_loss, after=after
            )
        if after is None:
            return self.layout.reference_sums(X, y, theta, loss, out, weights=weights)
        part, grad = self.layout.reference_sums(X, y, theta, loss, weights=weights)
        out += grad
        return after + part, out

    def local_hessian(self, X, y, theta, loss: PointwiseLoss, *, weights=None) -> np.ndarray:
        """Unscaled curvature sum, (n + 1, n + 1); single-output losses. Collective: no."""
        return self.layout.local_hessian(X, y, theta, loss, weights=weights)

    def local_curvature(self, X, y, theta, loss: PointwiseLoss, *, weights=None) -> np.ndarray:
        """Each row's weighted curvature ``s_i l''(z_i)``, shape (k,). Collective: no."""
        return self.layout.local_curvature(X, y, theta, loss, weights=weights)

    def curvature_product(self, X, d, v) -> np.ndarray:
        """``sum_i d_i (x_i, 1) ((x_i, 1) . v)``, shape (n + 1,): the gradient at ``v`` of
        ``sum_i d_i ((x_i, 1) . v)^2 / 2``, one sweep. Collective: no."""
        return self.local_sums(X, np.zeros(len(d)), v, SquaredLoss(), weights=d, need_loss=False)[1]

    def curvature_diagonal(self, X, d) -> np.ndarray:
        """``sum_i d_i x_ij^2`` and ``sum_i d_i x_ij`` per column, (2, n). Collective: no."""
        return self.layout.curvature_diagonal(X, d)

    def local_hessp(self, X, y, theta, v, loss: PointwiseLoss, *, weights=None) -> np.ndarray:
        """Unscaled curvature sum times ``v``; single-output losses. Collective: no."""
        d = self.local_curvature(X, y, theta, loss, weights=weights)
        return self.curvature_product(X, d, v)
