"""The Hessian's diagonal (Newton-CG's preconditioner) against the full Hessian, on dense
and CSR rows, raw and standardised, with row weights and a ridge."""

import numpy as np
import pytest
from conftest import sparse_problem
from mpi4py import MPI

from mpigd.kernels.losses import make_loss
from mpigd.objective import Objective
from mpigd.scaling import standardization


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_hessian_diagonal_is_the_diagonal_of_the_hessian(layout, scaled, weighted):
    X, y = sparse_problem("logistic", 300, 12, seed=4)
    X = X if layout == "csr" else X.toarray()
    rng = np.random.default_rng(5)
    comm = MPI.COMM_SELF
    shift = np.asarray(X[0].todense() if layout == "csr" else X[0]).ravel()
    scaling = standardization(comm, X, shift) if scaled else None
    weights = rng.uniform(0.2, 3.0, 300) if weighted else None
    f = Objective(comm, X, y, make_loss("logistic"), l2=0.05, weights=weights, scaling=scaling)
    theta = 0.3 * rng.standard_normal(13)
    _, _, H = f.hessian(theta)
    np.testing.assert_allclose(f.hess_diagonal(theta), np.diag(H), rtol=1e-10, atol=1e-14)
