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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_csr_diagonal_sums_over_blocks_of_rows_as_over_all_rows(monkeypatch, dtype, index):
    from mpigd.kernels import sparse

    X, _ = sparse_problem("logistic", 101, 9, seed=8)
    X = X.astype(dtype)
    X[[3, 40, 41]] = 0  # rows with no stored value, one at a block's end
    X.eliminate_zeros()
    X.indices, X.indptr = X.indices.astype(index), X.indptr.astype(index)
    d = np.random.default_rng(2).uniform(0.1, 2.0, 101)
    dense = X.toarray().astype(np.float64)
    expected = np.array([(dense**2).T @ d, dense.T @ d])
    monkeypatch.setattr(sparse, "DIAGONAL_BLOCK_ROWS", 7)  # 15 blocks, the last of 3 rows
    np.testing.assert_allclose(
        sparse.curvature_diagonal(X, d), expected, rtol=1e-6 if dtype == np.float32 else 1e-13
    )
