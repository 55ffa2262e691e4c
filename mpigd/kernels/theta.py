"""The layout of the parameter vector ``theta``, shared by kernels, objective and model.

Parameters are one flat vector ``theta``: the ``(n + 1, K)`` matrix whose first ``n``
rows are the weights of the ``K`` outputs and whose last row holds their intercepts, in
C order. ``K = 1`` for linear and logistic regression, so ``theta = (w_1..w_n, b)``.
"""

from __future__ import annotations

import numpy as np


def unpack_theta(theta: np.ndarray, n_features: int, n_outputs: int = 1):
    """``(W, b)`` of ``theta``: W a view, (n,) or (n, K); b a scalar or a (K,) view.
    Collective: no."""
    if n_outputs == 1:
        return theta[:n_features], theta[n_features]
    return theta[: n_features * n_outputs].reshape(n_features, n_outputs), theta[-n_outputs:]
