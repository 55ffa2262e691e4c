"""Run by test_mpi.py under ``mpiexec -n P``: evaluate the objective at a fixed point,
train, and have rank 0 save what every rank computed, for the test to compare.

Usage: python tests/mpi/mpi_worker.py L2 TOL DATA.h5 OUT.npz MODEL [DATA.h5 OUT.npz MODEL ...]
(each problem in turn, in one launch). MODEL may carry its loss's parameter, as
``tweedie:1.4`` or ``huber:1.0``. Linear and logistic train with gradient descent, the
others with L-BFGS, its vectors split over the ranks at P > 1 (below the size at which
training splits them, so that the tests on every rank count cover the split).
"""

import sys

import numpy as np
from mpi4py import MPI

from mpigd import fit, vectors
from mpigd.io.dataset import inspect_dataset, read_block
from mpigd.kernels.losses import make_loss
from mpigd.objective import Objective


def main(data, out, spec, l2, tol):
    comm = MPI.COMM_WORLD
    model, _, value = spec.partition(":")
    parameter = {PARAMETERS[model]: float(value)} if value else {}
    info = inspect_dataset(data)
    local = read_block(info, comm.rank, comm.size)
    objective = Objective(comm, local.X, local.y, make_loss(model, **parameter), l2=l2)
    theta = 0.3 * np.random.default_rng(7).standard_normal(info.n_features + 1)
    loss, grad = objective(theta)

    optimizer = "gd" if model in ("linear", "logistic") else "lbfgs"
    vectors.SPLIT_FROM = 1
    assert isinstance(vectors.vectors_for(comm, info.n_features + 1), vectors.RankSlices) == (
        comm.size > 1
    )
    fitted = fit(
        data, model, comm=comm, optimizer=optimizer, l2=l2, tol=tol, ftol=0.0, max_iter=5000,
        **parameter,
    )  # fmt: skip
    theta_fit = np.append(fitted.model.coef, fitted.model.intercept)
    mine = (
        local.stop - local.start,
        loss,
        grad,
        theta_fit,
        fitted.model.history,
        fitted.result.converged,
    )
    everyone = comm.gather(mine, root=0)
    if comm.rank == 0:
        rows, losses, grads, thetas, histories, converged = zip(*everyone, strict=True)
        np.savez(
            out,
            rows=rows,
            loss=losses,
            grad=grads,
            theta=thetas,
            history=np.array(histories),
            converged=converged,
        )


PARAMETERS = {"tweedie": "power", "huber": "epsilon"}

if __name__ == "__main__":
    l2, tol, problems = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    for i in range(0, len(problems), 3):
        main(*problems[i : i + 3], l2, tol)
